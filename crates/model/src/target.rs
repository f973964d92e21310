//! Per-worker load targets and how a run's total load is divided among its
//! workers. Targets are always absolute: a worker is told how many
//! connections to hold, never how many to add or remove.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The load one worker must generate (`RUN_STATUS.WORKER_TARGETS` entry).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkerTarget {
    pub target_connections: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_qps: Option<f64>,
}

/// `RUN_STATUS.WORKER_TARGETS`: worker id to target, ordered by id so that
/// the stored JSON is stable.
pub type WorkerTargets = BTreeMap<String, WorkerTarget>;

/// The id of the worker in group `group_id` (`worker-0`, `worker-1`, ...).
pub fn worker_id(group_id: u32) -> String {
    format!("worker-{group_id}")
}

/// Number of workers needed to hold `total` connections at most
/// `per_worker_cap` each (at least one).
pub fn workers_needed(total: u32, per_worker_cap: u32) -> u32 {
    total.div_ceil(per_worker_cap.max(1)).max(1)
}

/// Splits `total` connections evenly over `workers`; the remainder goes one
/// each to the lowest group ids.
pub fn split_evenly(total: u32, workers: u32) -> Vec<u32> {
    let workers = workers.max(1);
    let base = total / workers;
    let remainder = total % workers;
    (0..workers).map(|group| base + u32::from(group < remainder)).collect()
}

/// Inputs of the automatic per-worker capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityInputs {
    pub cores: u32,
    pub connections_per_core: u32,
    pub memory_gb: f64,
    pub memory_per_connection_gb: f64,
    pub max_per_worker: u32,
}

/// Automatic per-worker capacity: `max(1, min(cores * connections_per_core,
/// floor(memory_gb / memory_per_connection_gb), max_per_worker))`.
pub fn auto_capacity(inputs: CapacityInputs) -> u32 {
    let by_cpu = inputs.cores.saturating_mul(inputs.connections_per_core);
    let by_memory = if inputs.memory_per_connection_gb > 0.0 {
        let connections = (inputs.memory_gb / inputs.memory_per_connection_gb).floor();
        if connections >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            connections.max(0.0) as u32
        }
    } else {
        u32::MAX
    };
    by_cpu.min(by_memory).min(inputs.max_per_worker).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_remainder_to_lowest_groups() {
        assert_eq!(split_evenly(10, 3), [4, 3, 3]);
        assert_eq!(split_evenly(11, 3), [4, 4, 3]);
        assert_eq!(split_evenly(2, 4), [1, 1, 0, 0]);
        assert_eq!(split_evenly(9, 3).iter().sum::<u32>(), 9);
    }

    #[test]
    fn worker_count_rounds_up() {
        assert_eq!(workers_needed(64, 32), 2);
        assert_eq!(workers_needed(65, 32), 3);
        assert_eq!(workers_needed(0, 32), 1);
        assert_eq!(workers_needed(5, 0), 5);
    }

    #[test]
    fn capacity_takes_smallest_limit() {
        let inputs = CapacityInputs {
            cores: 2,
            connections_per_core: 50,
            memory_gb: 24.0,
            memory_per_connection_gb: 0.5,
            max_per_worker: 500,
        };
        assert_eq!(auto_capacity(inputs), 48);
        assert_eq!(auto_capacity(CapacityInputs { memory_gb: 0.1, ..inputs }), 1);
        assert_eq!(auto_capacity(CapacityInputs { max_per_worker: 10, ..inputs }), 10);
    }

    #[test]
    fn targets_json_shape() {
        let mut targets = WorkerTargets::new();
        targets.insert(worker_id(0), WorkerTarget { target_connections: 4, target_qps: None });
        targets.insert(worker_id(1), WorkerTarget { target_connections: 3, target_qps: Some(100.0) });
        let json = serde_json::to_value(&targets).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "worker-0": {"target_connections": 4},
                "worker-1": {"target_connections": 3, "target_qps": 100.0}
            })
        );
    }
}
