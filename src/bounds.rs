//! Range checks of user-given real numbers, written once: "finite, and at least (or above) a
//! minimum", with one wording for every option checked this way. NaN and the infinities never
//! pass, whatever the bound.

use std::fmt;

/// The smallest value an option admits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Min {
    /// `x >= v`.
    AtLeast(f64),
    /// `x > v`.
    Above(f64),
}

impl Min {
    /// Whether `x` is finite and meets the bound.
    pub fn admits(self, x: f64) -> bool {
        x.is_finite()
            && match self {
                Min::AtLeast(v) => x >= v,
                Min::Above(v) => x > v,
            }
    }

    /// `Ok`, or the message "`what` is `x`; it must be a finite number ≥ `v`" (`> v` for
    /// [`Min::Above`]).
    pub fn check(self, what: &str, x: f64) -> Result<(), String> {
        if self.admits(x) {
            Ok(())
        } else {
            Err(format!("{what} is {x}; it must be a finite number {self}"))
        }
    }
}

impl fmt::Display for Min {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Min::AtLeast(v) => write!(f, "≥ {v}"),
            Min::Above(v) => write!(f, "> {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Min;

    #[test]
    fn bounds_admit_what_they_say_and_never_nan_or_infinity() {
        assert!(Min::AtLeast(1.0).admits(1.0));
        assert!(!Min::Above(1.0).admits(1.0));
        assert!(Min::Above(0.0).admits(1e-300));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(!Min::AtLeast(f64::NEG_INFINITY).admits(bad), "{bad}");
        }
        assert_eq!(
            Min::AtLeast(1.0).check("the mean sequence length", 0.5),
            Err("the mean sequence length is 0.5; it must be a finite number ≥ 1".into())
        );
        assert_eq!(Min::Above(0.0).check("x", 2.0), Ok(()));
    }
}
