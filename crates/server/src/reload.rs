//! Applying a changed config file to a running region (SIGHUP or
//! `POST /v1/reload`): keyspace policies, ACL users, the default password,
//! protected mode, keyspace notifications, the admin token and the log
//! level change at once; any
//! other changed setting is reported as needing a restart. A file that does
//! not resolve changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::shared::Shared;

/// Settings a reload applies; every other one needs a restart.
const HOT_SETTINGS: &[&str] = &[
    "policy",
    "log-level",
    "aclfile",
    "requirepass",
    "protected-mode",
    "admin-token",
    "data-api-token",
    "data-api-readonly-token",
    "notify-keyspace-events",
];

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// What changed, one line each (`policy: orders:*=majority`).
    pub applied: Vec<String>,
    /// Settings whose new value takes effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// Reads the settings again (the `--config` file on top of the flags and
/// environment the process started with) and applies what can change.
pub fn reload(shared: &Shared) -> Result<ReloadReport, String> {
    let fresh = Config::resolve(shared.config.source.clone()).map_err(|e| format!("{e:#}"))?;
    let started_with = shared.config.policies.initial_primary();
    if fresh.policies.single_primary()? != started_with {
        return Err(format!(
            "the primary of primary keyspaces changed ({} at start); it is elected from the region the settings name at start, so this change needs a restart",
            started_with.map_or("none".to_string(), |r| r.to_string())
        ));
    }
    // Everything that can fail is checked before anything is applied.
    let acl = match &fresh.aclfile {
        Some(_) => Some(crate::acl::load(&fresh).map_err(|e| format!("{e:#}"))?),
        None => None,
    };
    let mut report = ReloadReport {
        needs_restart: restart_only_changes(&shared.config, &fresh)?,
        ..ReloadReport::default()
    };

    if *shared.policies() != fresh.policies {
        set_policies(shared, fresh.policies.clone());
        report
            .applied
            .push(format!("policy: {}", describe_policies(&fresh.policies)));
    }
    if let Some(acl) = acl {
        let users = acl.users().count();
        *shared.acl.write() = acl;
        report.applied.push(format!(
            "aclfile: {users} users loaded from {}",
            fresh
                .aclfile
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        ));
    }
    if *shared.requirepass.lock() != fresh.requirepass {
        shared
            .acl
            .write()
            .set_default_password(fresh.requirepass.as_deref(), &mut rand::thread_rng());
        *shared.requirepass.lock() = fresh.requirepass.clone();
        report.applied.push("requirepass: changed".into());
    }
    if shared
        .protected_mode
        .swap(fresh.protected_mode, Ordering::Relaxed)
        != fresh.protected_mode
    {
        report.applied.push(format!(
            "protected-mode: {}",
            if fresh.protected_mode { "yes" } else { "no" }
        ));
    }
    if crate::notify::flags(shared) != fresh.notify_keyspace_events {
        crate::notify::set_flags(
            shared,
            &mut shared.store.lock(),
            fresh.notify_keyspace_events,
        );
        report.applied.push(format!(
            "notify-keyspace-events: {:?}",
            crate::notify::render(fresh.notify_keyspace_events)
        ));
    }
    {
        let mut token = shared.admin_token.write();
        if *token != fresh.admin_token {
            *token = fresh.admin_token.clone();
            report.applied.push("admin-token: changed".into());
        }
    }
    {
        let fresh_tokens = crate::data_api::Tokens::from_config(&fresh);
        let mut tokens = shared.data_api_tokens.write();
        if *tokens != fresh_tokens {
            *tokens = fresh_tokens;
            report.applied.push("data-api-token: changed".into());
        }
    }
    // MERIDIAN_LOG is a developer's override and stays in force.
    if std::env::var_os("MERIDIAN_LOG").is_none() && crate::logging::current() != fresh.log_level {
        crate::logging::set(&fresh.log_level)?;
        report
            .applied
            .push(format!("log-level: {}", fresh.log_level));
    }
    tracing::info!(
        applied = ?report.applied,
        needs_restart = ?report.needs_restart,
        "settings reloaded"
    );
    Ok(report)
}

/// Replaces the keyspace policies in force.
pub fn set_policies(shared: &Shared, policies: meridian_cluster::Policies) {
    tracing::info!(policies = %describe_policies(&policies), "keyspace policies changed");
    *shared.policies.write() = Arc::new(policies);
}

pub fn describe_policies(p: &meridian_cluster::Policies) -> String {
    let rules: Vec<String> = p
        .rules()
        .map(|(pattern, policy)| format!("{}={}", String::from_utf8_lossy(pattern), policy.name()))
        .collect();
    if rules.is_empty() {
        "*=active-active".into()
    } else {
        rules.join(",")
    }
}

/// The settings, other than [`HOT_SETTINGS`], whose values differ.
fn restart_only_changes(running: &Config, fresh: &Config) -> Result<Vec<String>, String> {
    let table = |c: &Config| -> Result<toml::Table, String> {
        let text = c.to_toml().map_err(|e| format!("{e:#}"))?;
        text.parse::<toml::Table>().map_err(|e| e.to_string())
    };
    let (old, new) = (table(running)?, table(fresh)?);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| !HOT_SETTINGS.contains(&k.as_str()) && old.get(*k) != new.get(*k))
        .cloned()
        .collect())
}
