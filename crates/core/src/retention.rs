//! Retention rules: when a record must be reviewed and when it must be erased.
//!
//! LED 2016/680 art. 5 requires time limits for erasure or a periodic review of the need
//! to keep personal data; the Belgian law of 29 March 2024 on common databases requires a
//! review at least twice a year. A node's configuration may set its own periods per class;
//! these are the defaults.

use time::{Date, Duration};

use crate::class::ClassName;

/// How long records of one class are kept, and how often they are reviewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A record must be reviewed this long after its creation (and after each review).
    pub review_every: Duration,
    /// A record is erased this long after its creation at the latest.
    pub keep_for: Duration,
}

impl RetentionPolicy {
    /// The default policy of a class.
    pub fn default_for(class: ClassName) -> RetentionPolicy {
        let days = Duration::days;
        match class {
            // Twice a year (law of 29 March 2024, art. 44/11/3bis-like review cycle); at most
            // five years unless a review decides to keep it longer.
            ClassName::MinorRiskReport => RetentionPolicy {
                review_every: days(182),
                keep_for: days(5 * 365),
            },
            ClassName::ProtectionFile => RetentionPolicy {
                review_every: days(182),
                keep_for: days(10 * 365),
            },
            ClassName::FollowUpRequest => RetentionPolicy {
                review_every: days(182),
                keep_for: days(2 * 365),
            },
            ClassName::Rectification => RetentionPolicy {
                review_every: days(182),
                keep_for: days(5 * 365),
            },
            ClassName::ErasureNotice => RetentionPolicy {
                review_every: days(365),
                keep_for: days(3 * 365),
            },
        }
    }

    /// The review and erasure dates of a record created on `created`.
    pub fn deadlines(&self, created: Date) -> (Date, Date) {
        let review_by = created.checked_add(self.review_every).unwrap_or(Date::MAX);
        let erase_by = created.checked_add(self.keep_for).unwrap_or(Date::MAX);
        (review_by, erase_by.max(review_by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn minor_risk_reports_are_reviewed_twice_a_year() {
        let p = RetentionPolicy::default_for(ClassName::MinorRiskReport);
        let (review, erase) = p.deadlines(date!(2026 - 11 - 23));
        assert_eq!(review, date!(2027 - 05 - 24));
        assert_eq!(erase, date!(2031 - 11 - 22));
        assert!(
            p.review_every <= Duration::days(183),
            "at least twice a year"
        );
    }

    #[test]
    fn erase_is_never_before_review() {
        let p = RetentionPolicy {
            review_every: Duration::days(30),
            keep_for: Duration::days(10),
        };
        let (review, erase) = p.deadlines(date!(2026 - 01 - 01));
        assert_eq!(review, erase);
        let (review, erase) = p.deadlines(Date::MAX);
        assert_eq!((review, erase), (Date::MAX, Date::MAX));
    }
}
