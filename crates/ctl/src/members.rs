//! `meridian members`: list, add or remove regions through any region's
//! admin API (`/v1/members`); the change spreads to every region.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::http::Request;

#[derive(Args, Debug)]
pub struct MembersArgs {
    /// HTTP admin address of any region (`HOST:PORT`).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub http: String,
    /// The region's admin token, when it runs with `--admin-token`.
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the reply's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<MembersAction>,
}

#[derive(Subcommand, Debug)]
pub enum MembersAction {
    /// The members, their replication addresses and state (the default).
    List,
    /// Add a region: its id and its replication address (`HOST:PORT`).
    Add { region: String, addr: String },
    /// Remove a region for good; reports what it had not shipped here.
    Remove { region: String },
}

pub fn run(args: MembersArgs) -> anyhow::Result<()> {
    let token = args.token.as_deref();
    let reply = match args.action.unwrap_or(MembersAction::List) {
        MembersAction::List => Request::get("/v1/members").token(token).send(&args.http)?,
        MembersAction::Add { region, addr } => {
            let body = serde_json::json!({"region": region, "addr": addr}).to_string();
            Request::new("POST", "/v1/members")
                .token(token)
                .json_body(Some(&body))
                .send(&args.http)?
        }
        MembersAction::Remove { region } => {
            let path = format!("/v1/members/{region}");
            Request::new("DELETE", &path)
                .token(token)
                .send(&args.http)?
        }
    };
    let json: Value = serde_json::from_slice(&reply.body).map_err(|e| {
        anyhow::anyhow!(
            "HTTP {}: not JSON ({e}): {}",
            reply.code,
            String::from_utf8_lossy(&reply.body)
        )
    })?;
    if reply.code != 200 {
        let reason = json["error"].as_str().unwrap_or("no reason given");
        anyhow::bail!("HTTP {}: {reason}", reply.code);
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render(&json));
    }
    Ok(())
}

/// A summary a person reads at a glance.
pub fn render(json: &Value) -> String {
    let mut out = format!(
        "membership version {} as seen by {} (majority {})\n",
        json["version"],
        json["region"].as_str().unwrap_or("?"),
        json["majority"]
    );
    for m in json["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<20} {:<24} {}\n",
            m["id"].as_str().unwrap_or("?"),
            m["addr"].as_str().filter(|a| !a.is_empty()).unwrap_or("-"),
            m["state"].as_str().unwrap_or("?")
        ));
    }
    let removed: Vec<&str> = json["removed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !removed.is_empty() {
        out.push_str(&format!("removed: {}\n", removed.join(", ")));
    }
    if let Some(r) = json.get("removed_region") {
        let u = &json["unshipped"];
        out.push_str(&format!(
            "removed {}: it had written {} ops of its own when last heard; this region holds {}; unshipped here: {}\n",
            r.as_str().unwrap_or("?"),
            u["ops_they_had_written_when_last_heard"],
            u["ops_of_theirs_received_here"],
            u["unshipped_ops"]
        ));
    }
    out
}
