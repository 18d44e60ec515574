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
    /// A record whose review is overdue by more than this is erased: not reviewed means
    /// not shown to be necessary (LED art. 5).
    pub review_grace: Duration,
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
                review_grace: days(30),
            },
            ClassName::ProtectionFile => RetentionPolicy {
                review_every: days(182),
                keep_for: days(10 * 365),
                review_grace: days(30),
            },
            ClassName::FollowUpRequest => RetentionPolicy {
                review_every: days(182),
                keep_for: days(2 * 365),
                review_grace: days(30),
            },
            ClassName::Rectification => RetentionPolicy {
                review_every: days(182),
                keep_for: days(5 * 365),
                review_grace: days(30),
            },
            ClassName::ErasureNotice => RetentionPolicy {
                review_every: days(365),
                keep_for: days(3 * 365),
                review_grace: days(30),
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

/// A record's review and erasure dates, as carried by the record (`review_by`, `erase_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    /// The record must be reviewed by this date (LED art. 5: periodic review).
    pub review_by: Date,
    /// The record must be erased on this date at the latest (LED art. 5: time limit).
    pub erase_by: Date,
}

/// Why a record may not be shown, exported or sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restriction {
    /// Its review date has passed without a review deciding to keep it.
    ReviewOverdue {
        /// The review date that passed.
        review_by: Date,
    },
    /// It is under a legal hold (LED art. 16(3): restriction instead of erasure).
    Held,
}

impl Restriction {
    /// The rule, in words, for errors and `pons status`.
    pub fn rule(&self) -> String {
        match self {
            Restriction::ReviewOverdue { review_by } => format!(
                "restricted: review was due by {review_by} and no review kept it                  (LED art. 5; law of 29 March 2024)"
            ),
            Restriction::Held => "restricted: under a legal hold (LED art. 16(3))".into(),
        }
    }
}

/// Why a record is to be erased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErasureGround {
    /// Its keep period ended on `erase_by`.
    KeepPeriodEnded {
        /// The erasure date that was reached.
        erase_by: Date,
    },
    /// Its review was due by `review_by` and is overdue by more than the grace period.
    ReviewOverdue {
        /// The review date that passed.
        review_by: Date,
        /// The grace period, in days.
        grace_days: i64,
    },
}

impl ErasureGround {
    /// The ground, in words, for the tombstone journal entry and `pons retention plan`.
    pub fn rule(&self) -> String {
        match self {
            ErasureGround::KeepPeriodEnded { erase_by } => {
                format!("keep period ended on {erase_by} (LED art. 5, GDPR art. 5(1)(e))")
            }
            ErasureGround::ReviewOverdue {
                review_by,
                grace_days,
            } => format!(
                "review was due by {review_by} and is overdue by more than {grace_days} days \
                 (LED art. 5; law of 29 March 2024)"
            ),
        }
    }
}

/// What retention decides for one record on a given day.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Nothing is due: the record may be used.
    Active,
    /// The record may not be shown, exported or sent, for these reasons (at least one).
    Restricted(Vec<Restriction>),
    /// The record is to be erased now.
    Erase(ErasureGround),
}

/// What retention decides for a record with `deadlines`, held or not, on `today`, when a
/// review overdue by more than `review_grace` means erasure.
///
/// Rules: a held record is never erased and is restricted (LED art. 16(3)); otherwise a
/// record is erased from its `erase_by` date on, or once its review is overdue by more than
/// the grace period; before that, from the day after `review_by` it is restricted until a
/// review keeps it. A review is due *by* its date, so on `review_by` itself the record is
/// still usable.
pub fn decide(deadlines: Deadlines, held: bool, today: Date, review_grace: Duration) -> Decision {
    let overdue = today > deadlines.review_by;
    if held {
        let mut r = vec![Restriction::Held];
        if overdue {
            r.push(Restriction::ReviewOverdue {
                review_by: deadlines.review_by,
            });
        }
        return Decision::Restricted(r);
    }
    if today >= deadlines.erase_by {
        return Decision::Erase(ErasureGround::KeepPeriodEnded {
            erase_by: deadlines.erase_by,
        });
    }
    let grace_end = deadlines
        .review_by
        .checked_add(review_grace)
        .unwrap_or(Date::MAX);
    if today > grace_end {
        return Decision::Erase(ErasureGround::ReviewOverdue {
            review_by: deadlines.review_by,
            grace_days: review_grace.whole_days(),
        });
    }
    if overdue {
        return Decision::Restricted(vec![Restriction::ReviewOverdue {
            review_by: deadlines.review_by,
        }]);
    }
    Decision::Active
}

/// The outcome of a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReviewDecision {
    /// Still necessary: keep it until the next review.
    Keep,
    /// No longer necessary: erase it.
    Erase,
}

impl ReviewDecision {
    /// `keep` or `erase`.
    pub fn parse(s: &str) -> Option<ReviewDecision> {
        match s {
            "keep" => Some(ReviewDecision::Keep),
            "erase" => Some(ReviewDecision::Erase),
            _ => None,
        }
    }

    /// `keep` or `erase`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewDecision::Keep => "keep",
            ReviewDecision::Erase => "erase",
        }
    }
}

/// The deadlines after a review decided on `today` under `policy`.
///
/// `keep`: the next review is one review period after today, but never after `erase_by`
/// (a review does not extend the keep period). `erase`: the record is due for erasure
/// today (a held record still is not erased: see [`decide`]).
pub fn after_review(
    deadlines: Deadlines,
    policy: &RetentionPolicy,
    decision: ReviewDecision,
    today: Date,
) -> Deadlines {
    match decision {
        ReviewDecision::Keep => {
            let next = today.checked_add(policy.review_every).unwrap_or(Date::MAX);
            Deadlines {
                review_by: next.min(deadlines.erase_by),
                erase_by: deadlines.erase_by,
            }
        }
        ReviewDecision::Erase => Deadlines {
            review_by: deadlines.review_by.min(today),
            erase_by: today,
        },
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

    const G: Duration = Duration::days(30);

    fn dl(review_by: Date, erase_by: Date) -> Deadlines {
        Deadlines {
            review_by,
            erase_by,
        }
    }

    #[test]
    fn decisions_by_date() {
        let d = dl(date!(2027 - 05 - 24), date!(2031 - 11 - 22));
        assert_eq!(decide(d, false, date!(2027 - 05 - 24), G), Decision::Active);
        let overdue = Restriction::ReviewOverdue {
            review_by: date!(2027 - 05 - 24),
        };
        assert_eq!(
            decide(d, false, date!(2027 - 05 - 25), G),
            Decision::Restricted(vec![overdue.clone()])
        );
        assert_eq!(
            decide(d, false, date!(2031 - 11 - 22), Duration::MAX),
            Decision::Erase(ErasureGround::KeepPeriodEnded {
                erase_by: date!(2031 - 11 - 22)
            })
        );
        // Overdue by the grace period: restricted; by more: erased.
        assert!(matches!(
            decide(d, false, date!(2027 - 06 - 23), G),
            Decision::Restricted(_)
        ));
        assert_eq!(
            decide(d, false, date!(2027 - 06 - 24), G),
            Decision::Erase(ErasureGround::ReviewOverdue {
                review_by: date!(2027 - 05 - 24),
                grace_days: 30
            })
        );
        // Held: never erased, always restricted.
        assert_eq!(
            decide(d, true, date!(2026 - 12 - 01), G),
            Decision::Restricted(vec![Restriction::Held])
        );
        assert_eq!(
            decide(d, true, date!(2040 - 01 - 01), G),
            Decision::Restricted(vec![Restriction::Held, overdue])
        );
    }

    #[test]
    fn reviews_move_the_review_date_not_the_keep_period() {
        let p = RetentionPolicy::default_for(ClassName::MinorRiskReport);
        let d = dl(date!(2027 - 05 - 24), date!(2031 - 11 - 22));
        let kept = after_review(d, &p, ReviewDecision::Keep, date!(2027 - 06 - 01));
        assert_eq!(kept, dl(date!(2027 - 11 - 30), date!(2031 - 11 - 22)));
        assert_eq!(
            decide(kept, false, date!(2027 - 06 - 02), G),
            Decision::Active
        );
        let late = after_review(d, &p, ReviewDecision::Keep, date!(2031 - 10 - 01));
        assert_eq!(late.review_by, date!(2031 - 11 - 22));
        let erased = after_review(d, &p, ReviewDecision::Erase, date!(2027 - 01 - 10));
        assert_eq!(erased, dl(date!(2027 - 01 - 10), date!(2027 - 01 - 10)));
        assert!(matches!(
            decide(erased, false, date!(2027 - 01 - 10), G),
            Decision::Erase(_)
        ));
        assert_eq!(ReviewDecision::parse("keep"), Some(ReviewDecision::Keep));
        assert_eq!(ReviewDecision::parse("Keep"), None);
    }

    #[test]
    fn erase_is_never_before_review() {
        let p = RetentionPolicy {
            review_every: Duration::days(30),
            keep_for: Duration::days(10),
            review_grace: Duration::days(30),
        };
        let (review, erase) = p.deadlines(date!(2026 - 01 - 01));
        assert_eq!(review, erase);
        let (review, erase) = p.deadlines(Date::MAX);
        assert_eq!((review, erase), (Date::MAX, Date::MAX));
    }
}
