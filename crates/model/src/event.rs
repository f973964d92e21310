//! Control events: the append-only command bus through which the
//! orchestrator tells workers to start, stop, change phase or change their
//! load. `EVENT_TYPE` is stored beside the payload, so the payload JSON
//! carries no type tag of its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::{text_enum, RunPhase};

text_enum! {
    /// Kind of a control event (`RUN_CONTROL_EVENTS.EVENT_TYPE`).
    EventType, "event type" {
        Start => "START",
        Stop => "STOP",
        SetPhase => "SET_PHASE",
        SetWorkerTarget => "SET_WORKER_TARGET",
    }
}

text_enum! {
    /// Set of workers an event addresses.
    EventScope, "event scope" {
        Run => "RUN",
        WorkerGroup => "WORKER_GROUP",
        Worker => "WORKER",
    }
}

// The enum comes from a macro, which takes no `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for EventScope {
    fn default() -> Self {
        EventScope::Run
    }
}

/// `START`: workers waiting for the run may begin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartEvent {
    #[serde(default)]
    pub scope: EventScope,
    pub expected_workers: u32,
}

/// Origin of a stop request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopInitiator {
    Api,
    Cli,
    Orchestrator,
}

/// `STOP`: workers stop taking new work and drain what is in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopEvent {
    #[serde(default)]
    pub scope: EventScope,
    pub reason: String,
    pub initiated_by: StopInitiator,
    pub drain_timeout_seconds: u64,
}

/// `SET_PHASE`: the run moved to another phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPhaseEvent {
    #[serde(default)]
    pub scope: EventScope,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

/// `SET_WORKER_TARGET`: an absolute load target for the addressed workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetWorkerTargetEvent {
    #[serde(default)]
    pub scope: EventScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_group_id: Option<u32>,
    pub target_connections: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A decoded control event payload.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEventPayload {
    Start(StartEvent),
    Stop(StopEvent),
    SetPhase(SetPhaseEvent),
    SetWorkerTarget(SetWorkerTargetEvent),
}

/// Error raised when a stored event cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid {event_type} event data: {source}")]
pub struct EventDecodeError {
    pub event_type: EventType,
    #[source]
    pub source: serde_json::Error,
}

impl ControlEventPayload {
    /// Returns the `EVENT_TYPE` this payload is stored under.
    pub fn event_type(&self) -> EventType {
        match self {
            ControlEventPayload::Start(_) => EventType::Start,
            ControlEventPayload::Stop(_) => EventType::Stop,
            ControlEventPayload::SetPhase(_) => EventType::SetPhase,
            ControlEventPayload::SetWorkerTarget(_) => EventType::SetWorkerTarget,
        }
    }

    /// Returns the payload as the JSON stored in `EVENT_DATA`.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            ControlEventPayload::Start(event) => serde_json::to_value(event),
            ControlEventPayload::Stop(event) => serde_json::to_value(event),
            ControlEventPayload::SetPhase(event) => serde_json::to_value(event),
            ControlEventPayload::SetWorkerTarget(event) => serde_json::to_value(event),
        };
        // These types hold only strings, numbers, enums and timestamps, which
        // always serialise.
        value.expect("control event payloads always serialise to JSON")
    }

    /// Decodes `EVENT_DATA` of the given type.
    pub fn from_json(event_type: EventType, data: &serde_json::Value) -> Result<Self, EventDecodeError> {
        let decode_error = |source| EventDecodeError { event_type, source };
        let payload = match event_type {
            EventType::Start => ControlEventPayload::Start(serde_json::from_value(data.clone()).map_err(decode_error)?),
            EventType::Stop => ControlEventPayload::Stop(serde_json::from_value(data.clone()).map_err(decode_error)?),
            EventType::SetPhase => {
                ControlEventPayload::SetPhase(serde_json::from_value(data.clone()).map_err(decode_error)?)
            }
            EventType::SetWorkerTarget => {
                ControlEventPayload::SetWorkerTarget(serde_json::from_value(data.clone()).map_err(decode_error)?)
            }
        };
        Ok(payload)
    }

    /// Returns the scope the event addresses.
    pub fn scope(&self) -> EventScope {
        match self {
            ControlEventPayload::Start(event) => event.scope,
            ControlEventPayload::Stop(event) => event.scope,
            ControlEventPayload::SetPhase(event) => event.scope,
            ControlEventPayload::SetWorkerTarget(event) => event.scope,
        }
    }

    /// Whether a worker with this identity must act on the event.
    pub fn addresses(&self, worker_id: &str, worker_group_id: u32) -> bool {
        let (event_worker, event_group) = match self {
            ControlEventPayload::SetWorkerTarget(event) => (event.worker_id.as_deref(), event.worker_group_id),
            _ => (None, None),
        };
        match self.scope() {
            EventScope::Run => true,
            EventScope::WorkerGroup => event_group == Some(worker_group_id),
            EventScope::Worker => event_worker == Some(worker_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_event(scope: EventScope) -> ControlEventPayload {
        ControlEventPayload::SetWorkerTarget(SetWorkerTargetEvent {
            scope,
            worker_id: Some("worker-1".into()),
            worker_group_id: Some(1),
            target_connections: 16,
            target_qps: None,
            step_id: None,
            step_number: None,
            effective_at: None,
            ramp_seconds: Some(2.0),
            reason: None,
        })
    }

    #[test]
    fn payload_json_round_trips() {
        let payloads = [
            ControlEventPayload::Start(StartEvent { scope: EventScope::Run, expected_workers: 2 }),
            ControlEventPayload::Stop(StopEvent {
                scope: EventScope::Run,
                reason: "duration_elapsed".into(),
                initiated_by: StopInitiator::Orchestrator,
                drain_timeout_seconds: 120,
            }),
            ControlEventPayload::SetPhase(SetPhaseEvent {
                scope: EventScope::Run,
                phase: RunPhase::Measurement,
                effective_at: None,
            }),
            target_event(EventScope::Worker),
        ];
        for payload in payloads {
            let json = payload.to_json();
            let decoded = ControlEventPayload::from_json(payload.event_type(), &json).unwrap();
            assert_eq!(decoded, payload);
        }
    }

    #[test]
    fn scope_defaults_to_run() {
        let data = serde_json::json!({"expected_workers": 3});
        let payload = ControlEventPayload::from_json(EventType::Start, &data).unwrap();
        assert_eq!(payload.scope(), EventScope::Run);
        assert!(payload.addresses("worker-7", 7));
    }

    #[test]
    fn scope_matching() {
        assert!(target_event(EventScope::Worker).addresses("worker-1", 1));
        assert!(!target_event(EventScope::Worker).addresses("worker-2", 1));
        assert!(target_event(EventScope::WorkerGroup).addresses("worker-9", 1));
        assert!(!target_event(EventScope::WorkerGroup).addresses("worker-1", 2));
    }

    #[test]
    fn bad_event_data_names_type() {
        let data = serde_json::json!({"phase": "LUNCH"});
        let error = ControlEventPayload::from_json(EventType::SetPhase, &data).unwrap_err();
        assert!(error.to_string().starts_with("invalid SET_PHASE event data"), "{error}");
    }
}
