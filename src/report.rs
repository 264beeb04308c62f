//! How an error reaches a person: its message and then each cause not already quoted, on one
//! line (`PATH: cannot read: OS message` does not repeat the OS message). The CLI prints errors
//! this way, and rowflow-studio shows a failed run's error the same way.

/// `e` and its causes (its `source` chain), each once.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("quoting: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn each_cause_appears_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(super::describe(&Outer(io())), "outer: disk on fire");
        assert_eq!(super::describe(&Quoting(io())), "quoting: disk on fire");
    }
}
