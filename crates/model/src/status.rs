//! Run statuses, run phases, worker statuses and worker health, with the
//! exact upper-case spellings that the store tables and the API use.

/// Declares a string-valued enum whose spelling in the store is fixed by
/// the product contract, with `as_str`, `Display` and `FromStr`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in the database and sent over the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ParseEnumError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::ParseEnumError {
                        kind: $kind,
                        value: value.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

pub(crate) use text_enum;

text_enum! {
    /// Status of a run (`RUN_STATUS.STATUS`).
    RunStatus, "run status" {
        Prepared => "PREPARED",
        Running => "RUNNING",
        Cancelling => "CANCELLING",
        Completed => "COMPLETED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
}

impl RunStatus {
    /// Whether the run has ended and will never change status again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }

    /// Whether workers may be generating load for the run.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Cancelling)
    }
}

text_enum! {
    /// Phase of a run (`RUN_STATUS.PHASE`). Warmup is run-level: one warmup
    /// primes the target for every worker.
    RunPhase, "run phase" {
        Preparing => "PREPARING",
        Warmup => "WARMUP",
        Measurement => "MEASUREMENT",
        Cooldown => "COOLDOWN",
        Processing => "PROCESSING",
    }
}

text_enum! {
    /// Status a worker reports in its heartbeat.
    WorkerStatus, "worker status" {
        Starting => "STARTING",
        Waiting => "WAITING",
        Running => "RUNNING",
        Draining => "DRAINING",
        Completed => "COMPLETED",
        Dead => "DEAD",
    }
}

text_enum! {
    /// Health of a worker, derived from the age of its last heartbeat.
    WorkerHealth, "worker health" {
        Healthy => "HEALTHY",
        Stale => "STALE",
        Dead => "DEAD",
    }
}

/// Heartbeat ages at which a worker turns stale and dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthThresholds {
    pub stale_after: std::time::Duration,
    pub dead_after: std::time::Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            stale_after: std::time::Duration::from_secs(30),
            dead_after: std::time::Duration::from_secs(60),
        }
    }
}

impl WorkerHealth {
    /// Classifies a worker by the age of its last heartbeat, measured on
    /// the store's clock so that clock skew between hosts does not matter.
    pub fn from_heartbeat_age(age: std::time::Duration, thresholds: HealthThresholds) -> Self {
        if age >= thresholds.dead_after {
            WorkerHealth::Dead
        } else if age >= thresholds.stale_after {
            WorkerHealth::Stale
        } else {
            WorkerHealth::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn status_text_round_trips() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(*status));
        }
        for phase in RunPhase::ALL {
            assert_eq!(phase.as_str().parse::<RunPhase>(), Ok(*phase));
        }
        for status in WorkerStatus::ALL {
            assert_eq!(status.as_str().parse::<WorkerStatus>(), Ok(*status));
        }
    }

    #[test]
    fn unknown_status_names_value() {
        let error = "DONE".parse::<RunStatus>().unwrap_err();
        assert!(error.to_string().contains("`DONE`"), "{error}");
        assert!(error.to_string().contains("COMPLETED"), "{error}");
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = RunStatus::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [&RunStatus::Completed, &RunStatus::Failed, &RunStatus::Cancelled]);
    }

    #[test]
    fn health_boundaries() {
        let thresholds = HealthThresholds::default();
        let health = |secs| WorkerHealth::from_heartbeat_age(Duration::from_secs(secs), thresholds);
        assert_eq!(health(0), WorkerHealth::Healthy);
        assert_eq!(health(29), WorkerHealth::Healthy);
        assert_eq!(health(30), WorkerHealth::Stale);
        assert_eq!(health(59), WorkerHealth::Stale);
        assert_eq!(health(60), WorkerHealth::Dead);
    }
}
