//! The integration tests: one binary (so the SDK links once), one emulator for all of it.

mod alarms;
mod crash;
mod databases;
mod deployments;
mod domain;
mod examples;
mod existing;
mod faults;
mod harness;
mod images;
mod invalid;
mod network;
mod pipeline;
mod platform;
mod policy;
mod state;
mod tidy;
