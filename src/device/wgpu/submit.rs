//! Submissions, on a thread of their own.
//!
//! The thread that records a step never calls `queue.submit` itself: it finishes the pending
//! encoder and hands it, with the launches' parameter words, to the submission thread, which
//! writes the parameter ring and submits, in the order received. On a GPU a submission returns at
//! once; on a software adapter (lavapipe) it *runs* the work before returning, so without this
//! thread the host could not record step n+1 while the "device" runs step n. Everything that
//! needs a submission to have happened (a download, `synchronize`, a readback's wait) asks for
//! its [`Submitted`] receipt.

use super::{Pending, WgpuDevice, backend_error, lock};
use crate::device::DeviceError;
use crossbeam_channel::{Receiver, Sender, bounded as channel_of, unbounded};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Work for the submission thread.
enum Job {
    /// Write the parameter ring, then submit the commands, as job number `seq`.
    Submit {
        params: Vec<u8>,
        commands: wgpu::CommandBuffer,
        seq: u64,
        reply: Sender<Option<wgpu::SubmissionIndex>>,
    },
    /// Reply with the latest submission once every job before has been submitted.
    Barrier {
        reply: Sender<Option<wgpu::SubmissionIndex>>,
    },
}

/// What the recording side and the submission thread share.
#[derive(Default)]
pub(super) struct Progress {
    /// Jobs handed over so far (the next job's number is this + 1).
    sent: AtomicU64,
    /// The number of the last job whose `queue.submit` has returned.
    submitted: AtomicU64,
    /// Its submission.
    last: Mutex<Option<wgpu::SubmissionIndex>>,
    /// Submissions made.
    pub count: AtomicU64,
}

/// The submission thread's handle: jobs go in, it stops when this is dropped.
pub(super) struct Submitter {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    pub progress: Arc<Progress>,
}

/// A job handed to the submission thread: its number, and its submission once made.
pub(super) struct Submitted {
    pub seq: u64,
    index: Receiver<Option<wgpu::SubmissionIndex>>,
}

impl Submitted {
    /// Waits until the job has been submitted; its submission (`None` for a barrier with
    /// nothing submitted before it).
    pub fn index(&self) -> Result<Option<wgpu::SubmissionIndex>, DeviceError> {
        self.index
            .recv()
            .map_err(|_| backend_error("the wgpu submission thread stopped"))
    }
}

impl Submitter {
    /// Starts the thread, which submits to `queue` and writes parameters into `params`.
    pub fn start(
        device: wgpu::Device,
        queue: wgpu::Queue,
        params: wgpu::Buffer,
    ) -> Result<Self, DeviceError> {
        let (jobs, rx) = unbounded::<Job>();
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("rowflow-wgpu-submit".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Submit {
                            params: words,
                            commands,
                            seq,
                            reply,
                        } => {
                            if !words.is_empty() {
                                queue.write_buffer(&params, 0, &words);
                            }
                            let index = queue.submit([commands]);
                            shared.count.fetch_add(1, Ordering::Relaxed);
                            *lock(&shared.last) = Some(index.clone());
                            shared.submitted.store(seq, Ordering::Release);
                            // Runs the callbacks of work already done (staging chunks come
                            // back, readbacks are mapped) without waiting for anything.
                            let _ = device.poll(wgpu::PollType::Poll);
                            let _ = reply.send(Some(index));
                        }
                        Job::Barrier { reply } => {
                            let _ = reply.send(lock(&shared.last).clone());
                        }
                    }
                }
            })
            .map_err(|e| backend_error(format!("cannot start the submission thread: {e}")))?;
        Ok(Submitter {
            jobs: Some(jobs),
            thread: Some(thread),
            progress,
        })
    }

    fn send(&self, job: Job) -> Result<(), DeviceError> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| backend_error("the wgpu submission thread stopped"))
    }

    /// Whether job `seq`'s `queue.submit` has returned (on lavapipe: its work has run).
    pub fn has_submitted(&self, seq: u64) -> bool {
        self.progress.submitted.load(Ordering::Acquire) >= seq
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has submitted everything sent.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl WgpuDevice {
    /// Hands the pending encoder, if any, to the submission thread: the staging belt is closed
    /// (and recalled when the work is submitted), the parameter words go along to be written
    /// once. Returns the receipt.
    pub(super) fn flush(&self, pending: &mut Pending) -> Result<Option<Submitted>, DeviceError> {
        let Some(encoder) = pending.encoder.take() else {
            return Ok(None);
        };
        pending.belt.finish_and_recall_on_submit(&encoder);
        let commands = encoder.finish();
        let params = std::mem::take(&mut pending.params);
        pending.next_slot = 0;
        pending.staged = 0;
        let seq = self.submitter.progress.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, index) = channel_of(1);
        self.submitter.send(Job::Submit {
            params,
            commands,
            seq,
            reply,
        })?;
        Ok(Some(Submitted { seq, index }))
    }

    /// Submits whatever is pending and returns once everything recorded so far has been
    /// submitted, with the last submission.
    pub(super) fn submit_all(&self) -> Result<Option<wgpu::SubmissionIndex>, DeviceError> {
        let flushed = self.flush(&mut lock(&self.pending))?;
        let receipt = match flushed {
            Some(r) => r,
            None => {
                let (reply, index) = channel_of(1);
                self.submitter.send(Job::Barrier { reply })?;
                Submitted { seq: 0, index }
            }
        };
        receipt.index()
    }

    /// Waits for every submitted job to finish on the device, and reports its errors.
    pub(super) fn wait(&self) -> Result<(), DeviceError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(backend_error)?;
        self.take_errors()
    }
}
