//! The notifier: Alertmanager's semantics inside the agent.
//!
//! Alerts of the rules manager ([`alert::NotifyAlert`]) go through a routing tree
//! ([`route`]) into aggregation groups ([`dispatch::Notifier`]); at `group_wait`,
//! `group_interval` and `repeat_interval` each group is flushed: silenced ([`silence`]) and
//! inhibited ([`inhibit`]) alerts are left out, the notification log of the state store
//! decides whether anything new is to be said (which also holds across restarts), and the
//! notification ([`message::Notification`], Alertmanager's webhook v4 shape, redacted once
//! more) goes to the receiver's integrations ([`receivers`]).
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`config`] | the `notify:` configuration (route tree, inhibit rules, receivers, limits) and its validation |
//! | [`matcher`] | Alertmanager label matchers (`=`, `!=`, `=~`, `!~`, anchored) |
//! | [`alert`] | the notifier's alert and its (Alertmanager-compatible) fingerprint |
//! | [`route`] | the routing tree: matching, `continue`, inheritance, route keys |
//! | [`inhibit`] | inhibition rules |
//! | [`silence`] | the silences in force, read from the store |
//! | [`dispatch`] | the core: aggregation groups, timers, dedup, the `Dispatch` trait, the run loop, metrics |
//! | [`message`] | the notification payload and its redaction |
//! | [`receivers`] | email, webhook, Slack, PagerDuty, Alertmanager, file |
//!
//! Invariant: what leaves through a receiver is a [`message::Notification`], which only
//! exists redacted. Invariant: nothing in the notifier logs or returns a label value,
//! annotation or matcher value.

pub mod alert;
pub mod config;
pub mod dispatch;
pub mod inhibit;
pub mod matcher;
pub mod message;
pub mod receivers;
pub mod route;
pub mod silence;

pub use dispatch::{Clock, Dispatch, Integration, Notifier, NotifierHandle, NotifierOptions, SystemClock};
