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
    /// A record whose review is overdue by more than this is expired: not reviewed means
    /// not shown to be necessary (LED art. 5).
    pub review_grace: Duration,
    /// What happens to a record once it expires (keep period ended, or review overdue by
    /// more than the grace period).
    pub on_expiry: OnExpiry,
}

/// What happens to an expired record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExpiry {
    /// The sweep erases it (the default).
    Erase,
    /// It stays restricted until a review erases it: for classes whose erasure must be
    /// decided by a person (the DPO) rather than by the calendar.
    Restrict,
}

impl OnExpiry {
    /// `erase` or `restrict`.
    pub fn parse(s: &str) -> Option<OnExpiry> {
        match s {
            "erase" => Some(OnExpiry::Erase),
            "restrict" => Some(OnExpiry::Restrict),
            _ => None,
        }
    }

    /// `erase` or `restrict`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Erase => "erase",
            OnExpiry::Restrict => "restrict",
        }
    }
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
                on_expiry: OnExpiry::Erase,
            },
            ClassName::ProtectionFile => RetentionPolicy {
                review_every: days(182),
                keep_for: days(10 * 365),
                review_grace: days(30),
                on_expiry: OnExpiry::Erase,
            },
            ClassName::FollowUpRequest => RetentionPolicy {
                review_every: days(182),
                keep_for: days(2 * 365),
                review_grace: days(30),
                on_expiry: OnExpiry::Erase,
            },
            ClassName::Rectification => RetentionPolicy {
                review_every: days(182),
                keep_for: days(5 * 365),
                review_grace: days(30),
                on_expiry: OnExpiry::Erase,
            },
            ClassName::ErasureNotice => RetentionPolicy {
                review_every: days(365),
                keep_for: days(3 * 365),
                review_grace: days(30),
                on_expiry: OnExpiry::Erase,
            },
        }
    }

    /// The policy for records of a class this node has no policy for: never restricted for
    /// want of a review, erased at the record's own `erase_by`.
    pub fn fallback() -> RetentionPolicy {
        RetentionPolicy {
            review_every: Duration::MAX,
            keep_for: Duration::MAX,
            review_grace: Duration::MAX,
            on_expiry: OnExpiry::Erase,
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
    /// It expired, and its class's policy is [`OnExpiry::Restrict`].
    Expired(ErasureGround),
    /// Its erasure was ordered (by a review, an erasure notice or a rectification), and a
    /// legal hold keeps it.
    ErasureOrdered(String),
}

impl Restriction {
    /// The rule, in words, for errors and `pons status`.
    pub fn rule(&self) -> String {
        match self {
            Restriction::ReviewOverdue { review_by } => format!(
                "restricted: review was due by {review_by} and no review kept it \
                 (LED art. 5; law of 29 March 2024)"
            ),
            Restriction::Held => "restricted: under a legal hold (LED art. 16(3))".into(),
            Restriction::Expired(ground) => format!(
                "restricted: expired ({}); the class's policy keeps it restricted until a \
                 review erases it",
                ground.rule()
            ),
            Restriction::ErasureOrdered(why) => {
                format!("restricted: erasure ordered ({why}) and waiting for the hold to be lifted")
            }
        }
    }
}

/// Why a record is to be erased.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Someone decided it: a review, the sender's erasure notice, a rectification that
    /// supersedes it. The words say who and why.
    Ordered(String),
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
            ErasureGround::Ordered(why) => why.clone(),
        }
    }
}

/// The facts about one stored record that retention decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts<'a> {
    /// Its review and erasure dates.
    pub deadlines: Deadlines,
    /// Whether a legal hold is on it.
    pub held: bool,
    /// Why its erasure was ordered, if it was (see [`ErasureGround::Ordered`]).
    pub erasure_ordered: Option<&'a str>,
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

/// What retention decides for a record with `facts` on `today` under `policy`.
///
/// Rules, in order: a held record is never erased and is restricted (LED art. 16(3)); a
/// record whose erasure was ordered is erased; a record is expired from its `erase_by`
/// date on, or once its review is overdue by more than the policy's grace period, and an
/// expired record is erased or, if the policy says [`OnExpiry::Restrict`], restricted until
/// a review erases it; before that, from the day after `review_by` it is restricted until a
/// review keeps it. A review is due *by* its date, so on `review_by` itself the record is
/// still usable.
pub fn decide(facts: Facts<'_>, today: Date, policy: &RetentionPolicy) -> Decision {
    let d = facts.deadlines;
    let overdue = today > d.review_by;
    if facts.held {
        let mut r = vec![Restriction::Held];
        if let Some(why) = facts.erasure_ordered {
            r.push(Restriction::ErasureOrdered(why.to_owned()));
        }
        if overdue {
            r.push(Restriction::ReviewOverdue {
                review_by: d.review_by,
            });
        }
        return Decision::Restricted(r);
    }
    if let Some(why) = facts.erasure_ordered {
        return Decision::Erase(ErasureGround::Ordered(why.to_owned()));
    }
    let grace_end = d
        .review_by
        .checked_add(policy.review_grace)
        .unwrap_or(Date::MAX);
    let expired = if today >= d.erase_by {
        Some(ErasureGround::KeepPeriodEnded {
            erase_by: d.erase_by,
        })
    } else if today > grace_end {
        Some(ErasureGround::ReviewOverdue {
            review_by: d.review_by,
            grace_days: policy.review_grace.whole_days(),
        })
    } else {
        None
    };
    match (expired, policy.on_expiry) {
        (Some(ground), OnExpiry::Erase) => Decision::Erase(ground),
        (Some(ground), OnExpiry::Restrict) => {
            Decision::Restricted(vec![Restriction::Expired(ground)])
        }
        (None, _) if overdue => Decision::Restricted(vec![Restriction::ReviewOverdue {
            review_by: d.review_by,
        }]),
        (None, _) => Decision::Active,
    }
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

    fn policy(on_expiry: OnExpiry) -> RetentionPolicy {
        RetentionPolicy {
            on_expiry,
            ..RetentionPolicy::default_for(ClassName::MinorRiskReport)
        }
    }

    fn facts(deadlines: Deadlines, held: bool) -> Facts<'static> {
        Facts {
            deadlines,
            held,
            erasure_ordered: None,
        }
    }

    /// `decide` under the default minor-risk-report policy (grace 30 days, erase).
    fn decide_g(d: Deadlines, held: bool, today: Date) -> Decision {
        decide(facts(d, held), today, &policy(OnExpiry::Erase))
    }

    fn dl(review_by: Date, erase_by: Date) -> Deadlines {
        Deadlines {
            review_by,
            erase_by,
        }
    }

    #[test]
    fn decisions_by_date() {
        let d = dl(date!(2027 - 05 - 24), date!(2031 - 11 - 22));
        assert_eq!(decide_g(d, false, date!(2027 - 05 - 24)), Decision::Active);
        let overdue = Restriction::ReviewOverdue {
            review_by: date!(2027 - 05 - 24),
        };
        assert_eq!(
            decide_g(d, false, date!(2027 - 05 - 25)),
            Decision::Restricted(vec![overdue.clone()])
        );
        assert_eq!(
            decide(
                facts(d, false),
                date!(2031 - 11 - 22),
                &RetentionPolicy::fallback()
            ),
            Decision::Erase(ErasureGround::KeepPeriodEnded {
                erase_by: date!(2031 - 11 - 22)
            })
        );
        // Overdue by the grace period: restricted; by more: erased.
        assert!(matches!(
            decide_g(d, false, date!(2027 - 06 - 23)),
            Decision::Restricted(_)
        ));
        assert_eq!(
            decide_g(d, false, date!(2027 - 06 - 24)),
            Decision::Erase(ErasureGround::ReviewOverdue {
                review_by: date!(2027 - 05 - 24),
                grace_days: 30
            })
        );
        // Held: never erased, always restricted.
        assert_eq!(
            decide_g(d, true, date!(2026 - 12 - 01)),
            Decision::Restricted(vec![Restriction::Held])
        );
        assert_eq!(
            decide_g(d, true, date!(2040 - 01 - 01)),
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
            decide_g(kept, false, date!(2027 - 06 - 02)),
            Decision::Active
        );
        let late = after_review(d, &p, ReviewDecision::Keep, date!(2031 - 10 - 01));
        assert_eq!(late.review_by, date!(2031 - 11 - 22));
        let erased = after_review(d, &p, ReviewDecision::Erase, date!(2027 - 01 - 10));
        assert_eq!(erased, dl(date!(2027 - 01 - 10), date!(2027 - 01 - 10)));
        assert!(matches!(
            decide_g(erased, false, date!(2027 - 01 - 10)),
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
            on_expiry: OnExpiry::Erase,
        };
        let (review, erase) = p.deadlines(date!(2026 - 01 - 01));
        assert_eq!(review, erase);
        let (review, erase) = p.deadlines(Date::MAX);
        assert_eq!((review, erase), (Date::MAX, Date::MAX));
    }

    #[test]
    fn a_restrict_policy_keeps_expired_records_restricted_until_ordered() {
        let d = dl(date!(2027 - 05 - 24), date!(2031 - 11 - 22));
        let p = policy(OnExpiry::Restrict);
        let ground = ErasureGround::KeepPeriodEnded {
            erase_by: date!(2031 - 11 - 22),
        };
        assert_eq!(
            decide(facts(d, false), date!(2031 - 11 - 22), &p),
            Decision::Restricted(vec![Restriction::Expired(ground)])
        );
        let ordered = Facts {
            erasure_ordered: Some("review decided to erase"),
            ..facts(d, false)
        };
        assert_eq!(
            decide(ordered, date!(2031 - 11 - 22), &p),
            Decision::Erase(ErasureGround::Ordered("review decided to erase".into()))
        );
        // An order does not beat a hold: restricted, with the order remembered.
        let held = Facts {
            held: true,
            ..ordered
        };
        assert_eq!(
            decide(held, date!(2027 - 01 - 01), &p),
            Decision::Restricted(vec![
                Restriction::Held,
                Restriction::ErasureOrdered("review decided to erase".into())
            ])
        );
        assert_eq!(OnExpiry::parse("restrict"), Some(OnExpiry::Restrict));
        assert_eq!(OnExpiry::parse("delete"), None);
        assert!(!Restriction::ReviewOverdue {
            review_by: date!(2027 - 05 - 24)
        }
        .rule()
        .contains("  "));
    }
}
