//! `infra`: plans and applies an ECS Fargate platform on AWS from one YAML file per environment.
//!
//! The pipeline runs one way: `config` (parse + validate) → `desired` (resource graph) → `plan`
//! (three-way diff against recorded state and live AWS) → `exec` (dependency-ordered apply) →
//! `render` (all output). `config`, `desired`, `model` and `plan` are pure; only `aws` talks to
//! AWS. See ARCHITECTURE.md.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cost;
pub mod desired;
pub mod diag;
pub mod error;
pub mod exec;
pub mod exit;
pub mod lint;
pub mod model;
pub mod naming;
pub mod ops;
pub mod outputs;
pub mod plan;
pub mod policy;
pub mod render;
pub mod state;
