//! EventBridge Scheduler: one one-time schedule per (operation, instant) in the template's
//! schedule group. Its target is the fan-out queue, its input a small `{"release": …}` message
//! (the chunks themselves are stored in the push table, never in the schedule), and it deletes
//! itself after it fired (`ActionAfterCompletion: DELETE`). The dispatch function receives the
//! release like any queue message.

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use chrono::{DurationRound, TimeDelta};

use pushgate_core::app::ports::{QueueBody, QueueError, Release, Scheduler};
use pushgate_core::domain::{AccountId, OperationId, Timestamp};

/// Where schedules go and what they may do.
#[derive(Debug, Clone)]
pub struct ScheduleTarget {
    /// The schedule group (the template's `ScheduleGroup`).
    pub group: String,
    /// The role EventBridge Scheduler assumes to send to the queue.
    pub role_arn: String,
    /// The fan-out queue's ARN.
    pub queue_arn: String,
}

/// [`Scheduler`] on EventBridge Scheduler.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    target: ScheduleTarget,
}

impl EventBridgeScheduler {
    /// Schedules into `target.group`, sending to `target.queue_arn` as `target.role_arn`.
    pub fn new(client: Client, target: ScheduleTarget) -> Self {
        Self { client, target }
    }
}

/// The schedule of instant `instant` of `operation` (names are unique in a group; an operation
/// id is globally unique): `comms_operation_…-3`.
pub fn schedule_name(operation: OperationId, instant: u8) -> String {
    format!("{operation}-{instant}")
}

/// The `at(...)` expression of `at` in UTC, rounded up to the second (never early).
pub fn at_expression(at: Timestamp) -> String {
    let second = TimeDelta::seconds(1);
    let floor = at.duration_trunc(second).unwrap_or(at);
    let ceil = if floor < at { floor + second } else { floor };
    format!("at({})", ceil.format("%Y-%m-%dT%H:%M:%S"))
}

fn failed(what: &str, e: impl std::error::Error) -> QueueError {
    QueueError(format!("EventBridge Scheduler {what} failed: {}", DisplayErrorContext(e)))
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, release: &Release) -> Result<(), QueueError> {
        let input = serde_json::to_string(&QueueBody::Release { release: release.clone() })
            .map_err(|e| QueueError(format!("cannot encode a release: {e}")))?;
        let target = Target::builder()
            .arn(&self.target.queue_arn)
            .role_arn(&self.target.role_arn)
            .input(input)
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        let created = self
            .client
            .create_schedule()
            .name(schedule_name(release.operation_id, release.instant))
            .group_name(&self.target.group)
            // An instant that passed while the send was being accepted is scheduled just ahead
            // (EventBridge Scheduler refuses past one-time schedules).
            .schedule_expression(at_expression(release.at.max(chrono::Utc::now() + TimeDelta::seconds(2))))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .description(format!("pushgate release of {} instant {}", release.operation_id, release.instant))
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Scheduled before (a retried send): the schedule is the same.
            Err(e) if e.code() == Some("ConflictException") => Ok(()),
            Err(e) => Err(failed("CreateSchedule", e)),
        }
    }

    async fn unschedule(&self, _account: &AccountId, operation: OperationId, instant: u8) -> Result<(), QueueError> {
        let deleted = self
            .client
            .delete_schedule()
            .name(schedule_name(operation, instant))
            .group_name(&self.target.group)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(failed("DeleteSchedule", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_scheduled_in_utc_rounded_up_to_the_second() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T18:30:05.250+01:00").expect("valid").to_utc();
        assert_eq!(at_expression(at), "at(2026-11-27T17:30:06)");
        let whole = chrono::DateTime::parse_from_rfc3339("2026-11-27T17:30:05Z").expect("valid").to_utc();
        assert_eq!(at_expression(whole), "at(2026-11-27T17:30:05)");
    }

    #[test]
    fn schedule_names_fit_the_64_character_limit() {
        let name = schedule_name(OperationId::from_ulid(ulid::Ulid::generate()), 9);
        assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{name}");
    }
}
