//! Every command the service sends to the Redis servers that hold its keys,
//! in one table. The Cluster router finds a command's node by it, the
//! start-up probe sends each one it marks as needed, and the ACL user of
//! docs/production-redis.md is checked against it (a test below): a new
//! command is added here, once.
//!
//! The sentinels are not in it: they are asked `SENTINEL …` and
//! subscribed to, with an ACL of their own (docs/production-redis.md).

use redis::Cmd;

/// A command the service sends.
#[derive(Debug)]
pub struct Command {
    /// As Redis names it, with its subcommand if it has one
    /// (`CLUSTER SLOTS`).
    pub name: &'static str,
    /// How Redis Cluster mode finds the node it goes to.
    pub route: Route,
    /// When the service sends it, and so whether its ACL user needs it.
    pub needed: Needed,
    /// What it is for.
    pub purpose: &'static str,
}

/// How the Cluster router finds a command's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The first argument is the key: the master of its slot.
    FirstArgIsKey,
    /// No key; it acts on the connection's own state (its transaction, its
    /// writes), so it goes to that connection's node: in a pipeline, where
    /// the pipeline's key sends it; alone, to the node the caller names.
    ConnectionsNode,
    /// No key; any master answers.
    AnyNode,
    /// Never routed: the router sends it to the node it means, or the
    /// driver does.
    NotRouted,
}

/// When the service sends a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// On every deployment: the ACL user needs it, the start-up probe sends
    /// it.
    Always,
    /// Only with `TOKEN_ENDPOINT_REDIS_REPLICA_ACKS` above 0. The ACL user
    /// has it anyway (one user for every setting); the probe sends it only
    /// then.
    WithReplicaAcks,
    /// Only in Cluster mode, sent by the router (`+cluster|slots +asking`
    /// on top of the user's rules).
    Cluster,
    /// Only behind Sentinel, sent by the driver to check that it talks to
    /// the master (`+role +info` on top).
    Sentinel,
    /// Not by the service: what a resource server sends to check a
    /// revocation ([`super::CodeStore::is_grant_revoked`] is its Rust
    /// form, for tests and tools).
    ResourceServer,
}

/// The table, in the order of the ACL user's rules.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "PING",
        route: Route::AnyNode,
        needed: Needed::Always,
        purpose: "the start-up check and /readyz",
    },
    Command {
        name: "GET",
        route: Route::FirstArgIsKey,
        needed: Needed::Always,
        purpose: "the take's first step: read the record; and the used marker when the code is absent",
    },
    Command {
        name: "GETDEL",
        route: Route::FirstArgIsKey,
        needed: Needed::Always,
        purpose: "the take's second step, in MULTI: take the record",
    },
    Command {
        name: "PTTL",
        route: Route::FirstArgIsKey,
        needed: Needed::WithReplicaAcks,
        purpose: "read beside the record's GET, so that a take whose WAIT falls short is put back with no more life than it had",
    },
    Command {
        name: "SET",
        route: Route::FirstArgIsKey,
        needed: Needed::Always,
        purpose: "the used marker (SET … EX … NX, in the take's MULTI); a revoked grant's key (SET … EX); a take put back (SET … NX PX) or marked as without tokens (SET … XX KEEPTTL); a code, for issue-code; a DPoP proof's replay key (SET … 1 EX … NX), pipelined with the record's GET",
    },
    Command {
        name: "DEL",
        route: Route::FirstArgIsKey,
        needed: Needed::Always,
        purpose: "a record that cannot be parsed; the used marker of a take that issued nothing; the start-up probe's marker; a DPoP proof's replay key, released when its request is answered 503",
    },
    Command {
        name: "MULTI",
        route: Route::ConnectionsNode,
        needed: Needed::Always,
        purpose: "opens the take's atomic step (and a put-back's)",
    },
    Command {
        name: "EXEC",
        route: Route::ConnectionsNode,
        needed: Needed::Always,
        purpose: "closes the take's atomic step (and a put-back's)",
    },
    Command {
        name: "WAIT",
        route: Route::ConnectionsNode,
        needed: Needed::WithReplicaAcks,
        purpose: "after a take, until enough replicas hold it, on the node that ran it",
    },
    Command {
        name: "EXISTS",
        route: Route::FirstArgIsKey,
        needed: Needed::ResourceServer,
        purpose: "whether a grant is revoked",
    },
    Command {
        name: "CLUSTER SLOTS",
        route: Route::NotRouted,
        needed: Needed::Cluster,
        purpose: "the slot map, from every node the router knows",
    },
    Command {
        name: "ASKING",
        route: Route::NotRouted,
        needed: Needed::Cluster,
        purpose: "following an ASK redirection, just before the command, on the node it names",
    },
    Command {
        name: "ROLE",
        route: Route::NotRouted,
        needed: Needed::Sentinel,
        purpose: "the driver checks that the server the sentinels name is the master",
    },
    Command {
        name: "INFO",
        route: Route::NotRouted,
        needed: Needed::Sentinel,
        purpose: "the driver checks that the server the sentinels name is the master",
    },
];

/// The table's entry for `cmd`, by its name (and subcommand, for a name
/// of two words), in any case.
pub fn of(cmd: &Cmd) -> Option<&'static Command> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[][..],
    });
    let name = args.next()?;
    let sub = args.next();
    COMMANDS.iter().find(|command| {
        let mut words = command.name.split(' ');
        let same = |word: Option<&str>, arg: Option<&[u8]>| match (word, arg) {
            (Some(word), Some(arg)) => word.as_bytes().eq_ignore_ascii_case(arg),
            (None, _) => true,
            (Some(_), None) => false,
        };
        same(words.next(), Some(name)) && same(words.next(), sub)
    })
}

/// The key `cmd` is routed by: its first argument after its name, for a
/// command the table routes so.
pub fn key_of(cmd: &Cmd) -> Option<&[u8]> {
    match cmd.args_iter().nth(1)? {
        redis::Arg::Simple(key) => Some(key),
        _ => None,
    }
}

/// The command rules of the service's ACL user: `+<command>` for each one
/// it sends on any deployment, `|` between a command and its subcommand.
pub fn command_rules() -> impl Iterator<Item = String> {
    COMMANDS
        .iter()
        .filter(|c| matches!(c.needed, Needed::Always | Needed::WithReplicaAcks))
        .map(|c| format!("+{}", c.name.to_ascii_lowercase().replace(' ', "|")))
}

/// The rules of the service's ACL user (docs/production-redis.md, "The
/// ACL user"), for keys under `key_prefix`: its keys, no channels, and the
/// commands of [`COMMANDS`] it sends.
pub fn acl_rules(key_prefix: &str) -> Vec<String> {
    ["resetkeys".to_owned(), format!("~{key_prefix}*")]
        .into_iter()
        .chain(["resetchannels".to_owned(), "-@all".to_owned()])
        .chain(command_rules())
        .collect()
}

/// The names of the commands the start-up probe must send: every command
/// the service needs on this deployment's settings, whatever the topology.
pub fn probed(replica_acks: u32) -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .filter(move |c| match c.needed {
            Needed::Always => true,
            Needed::WithReplicaAcks => replica_acks > 0,
            Needed::Cluster | Needed::Sentinel | Needed::ResourceServer => false,
        })
        .map(|c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION_REDIS: &str = include_str!("../../docs/production-redis.md");

    /// The `ACL SETUSER` line of docs/production-redis.md is the table's.
    #[test]
    fn the_documented_acl_user_is_the_tables() {
        let start = PRODUCTION_REDIS
            .find("ACL SETUSER token-endpoint on >PASSWORD")
            .expect("the documented ACL user");
        let mut words = Vec::new();
        for line in PRODUCTION_REDIS[start..].lines() {
            words.extend(line.split_whitespace().filter(|w| *w != "\\"));
            if !line.trim_end().ends_with('\\') {
                break;
            }
        }
        assert_eq!(
            words[..5],
            ["ACL", "SETUSER", "token-endpoint", "on", ">PASSWORD"]
        );
        assert_eq!(words[5..], acl_rules("oauth:"));
    }

    /// The commands docs/production-redis.md lists ("| command | why |")
    /// are the table's, but for the resource server's.
    #[test]
    fn the_documented_commands_are_the_tables() {
        let table = PRODUCTION_REDIS
            .split("| command | why |")
            .nth(1)
            .expect("the documented commands");
        let mut documented: Vec<&str> = table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|row| {
                let first_cell = row.split('|').nth(1).unwrap_or_default();
                first_cell.split('`').skip(1).step_by(2)
            })
            .collect();
        let mut ours: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.needed != Needed::ResourceServer)
            .map(|c| c.name)
            .collect();
        documented.sort_unstable();
        ours.sort_unstable();
        assert_eq!(documented, ours);
    }

    #[test]
    fn commands_are_found_by_name_and_subcommand() {
        let mut set = redis::cmd("set");
        set.arg("k").arg("v");
        assert_eq!(of(&set).map(|c| c.name), Some("SET"));
        assert_eq!(key_of(&set), Some(&b"k"[..]));
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        assert_eq!(of(&slots).map(|c| c.name), Some("CLUSTER SLOTS"));
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        assert!(of(&nodes).is_none());
        assert!(of(&redis::cmd("CLUSTER")).is_none());
        assert!(of(&redis::cmd("SETEX")).is_none());
        assert!(of(&redis::cmd("EVALSHA")).is_none());
    }
}
