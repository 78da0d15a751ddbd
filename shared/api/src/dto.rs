//! Wire shapes (Twilio's camelCase JSON) of the resources.

use serde_json::{Value, json};

use pushgate_core::domain::{
    App, Credential, DeviceRegistration, Notification, Operation, OperationErrorEntry, Stats, User, wire_time,
};

fn to(n: &Notification) -> Value {
    match n.to.user_id {
        Some(user) => json!({ "userId": user, "token": n.to.token, "provider": n.to.provider }),
        None => json!({ "token": n.to.token, "provider": n.to.provider }),
    }
}

/// The metadata shape of a PushNotification (list items: everything but `content`).
pub fn notification_metadata(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "to": to(n),
        "from": n.from,
        "priority": n.priority,
        "sound": n.sound,
        "status": n.status,
        "tags": n.tags,
        "operationId": n.operation_id,
        "scheduledFor": n.scheduled_for.as_ref().map(wire_time),
        "createdAt": wire_time(&n.created_at),
        "updatedAt": wire_time(&n.updated_at),
        "error": n.error.as_ref().map(|e| json!({ "code": e.code, "message": e.message })),
    })
}

/// The full PushNotification (fetch).
pub fn notification(n: &Notification) -> Value {
    let mut v = notification_metadata(n);
    v["content"] = serde_json::to_value(&n.content).unwrap_or(Value::Null);
    v
}

fn stats(s: &Stats) -> Value {
    json!({
        "total": s.total,
        "recipients": s.recipients,
        "unaddressable": s.unaddressable,
        "scheduled": s.scheduled,
        "queued": s.queued,
        "sent": s.sent,
        "failed": s.failed,
        "canceled": s.canceled,
    })
}

pub fn operation(op: &Operation) -> Value {
    json!({
        "id": op.id,
        "status": op.status,
        "stats": stats(&op.stats),
        "createdAt": wire_time(&op.created_at),
        "updatedAt": wire_time(&op.updated_at),
    })
}

/// An entry of an Operation's Errors list.
pub fn operation_error(e: &OperationErrorEntry) -> Value {
    json!({
        "pushNotificationId": e.notification_id,
        "code": e.error.code,
        "message": e.error.message,
        "provider": e.provider,
        "providerReason": e.error.provider_reason,
        "occurredAt": wire_time(&e.occurred_at),
    })
}

/// A Credential (never its content).
pub fn credential(c: &Credential) -> Value {
    json!({
        "id": c.id,
        "credentialType": c.credential_type,
        "isDefault": c.is_default,
        "appName": c.app_name,
        "createdAt": wire_time(&c.created_at),
        "updatedAt": wire_time(&c.updated_at),
    })
}

pub fn app(a: &App) -> Value {
    json!({
        "name": a.name,
        "isDefault": a.is_default,
        "defaultCredentials": a.default_credentials.iter()
            .map(|(t, id)| json!({ "credentialType": t, "credentialId": id }))
            .collect::<Vec<_>>(),
        "createdAt": wire_time(&a.created_at),
        "updatedAt": wire_time(&a.updated_at),
    })
}

/// A DeviceRegistration.
pub fn device_registration(r: &DeviceRegistration) -> Value {
    json!({
        "id": r.id,
        "appName": r.app_name,
        "userId": r.user_id,
        "devices": r.devices.iter()
            .map(|d| json!({ "token": d.token, "provider": d.provider, "createdAt": wire_time(&d.created_at) }))
            .collect::<Vec<_>>(),
        "createdAt": wire_time(&r.created_at),
        "updatedAt": wire_time(&r.updated_at),
    })
}

pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "createdAt": wire_time(&u.created_at),
        "updatedAt": wire_time(&u.updated_at),
        "deletedAt": u.deleted_at.as_ref().map(wire_time),
    })
}
