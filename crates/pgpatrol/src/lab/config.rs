//! Port layout, secrets and the Patroni YAML of each lab member (built as JSON values,
//! serialized by `crate::yaml`, never from string templates).

use std::net::TcpListener;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{LabPaths, PG_BIN_DIR, REST_USER};

/// Every port a lab listens on, all on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    /// (REST API, PostgreSQL) per member, in member order.
    pub members: Vec<(u16, u16)>,
}

impl Ports {
    /// The fixed layout of `--port-base P`: etcd client P, peer P+1, member i REST P+2+2i and
    /// PostgreSQL P+3+2i.
    pub fn fixed(base: u16, members: usize) -> Result<Self> {
        let count = 2 + 2 * members;
        let last = usize::from(base) + count - 1;
        if base < 1024 || last > usize::from(u16::MAX) {
            bail!("--port-base {base} does not fit {count} ports between 1024 and 65535");
        }
        let at = |off: usize| base + off as u16;
        Ok(Ports {
            etcd_client: at(0),
            etcd_peer: at(1),
            members: (0..members)
                .map(|i| (at(2 + 2 * i), at(3 + 2 * i)))
                .collect(),
        })
    }

    /// Ports the kernel reports free right now (bind 127.0.0.1:0, read, release). Every
    /// listener is held until all are picked, so the ports are distinct.
    pub fn pick(members: usize) -> Result<Self> {
        let held: Vec<TcpListener> = (0..2 + 2 * members)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")
            })
            .collect::<Result<_>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()
            .context("cannot read a picked port")?;
        Ok(Ports {
            etcd_client: ports[0],
            etcd_peer: ports[1],
            members: ports[2..].chunks(2).map(|c| (c[0], c[1])).collect(),
        })
    }

    pub fn all(&self) -> Vec<u16> {
        let mut all = vec![self.etcd_client, self.etcd_peer];
        for (rest, pg) in &self.members {
            all.extend([*rest, *pg]);
        }
        all
    }

    /// Fails on the first port something already listens on.
    pub fn check_free(&self) -> Result<()> {
        for port in self.all() {
            if !port_free(port) {
                bail!("port 127.0.0.1:{port} is in use: choose another --port-base");
            }
        }
        Ok(())
    }
}

/// True when 127.0.0.1:port can be bound (std sets SO_REUSEADDR, so TIME_WAIT does not count).
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Passwords generated for one lab.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub restapi: String,
    pub superuser: String,
    pub replication: String,
}

impl Secrets {
    /// Another lab's secrets (a standby cluster is a copy of its source: the same roles and
    /// passwords in PostgreSQL, so the same Patroni credentials).
    pub fn of_lab(paths: &LabPaths) -> Result<Self> {
        Self::of_config(&paths.config("pg0"))
    }

    /// The secrets of one member's patroni.yml (every member of a lab shares them).
    pub fn of_config(path: &std::path::Path) -> Result<Self> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = crate::yaml::from_str(&raw).map_err(anyhow::Error::msg)?;
        let path_shown = path.display();
        let get = |path: &[&str]| -> Result<String> {
            path.iter()
                .try_fold(&v, |node, k| node.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{} has no {}", path_shown, path.join(".")))
        };
        Ok(Secrets {
            restapi: get(&["restapi", "authentication", "password"])?,
            superuser: get(&["postgresql", "authentication", "superuser", "password"])?,
            replication: get(&["postgresql", "authentication", "replication", "password"])?,
        })
    }

    pub fn generate() -> Result<Self> {
        Ok(Secrets {
            restapi: random_hex()?,
            superuser: random_hex()?,
            replication: random_hex()?,
        })
    }
}

/// 16 random bytes as hex, from the kernel.
fn random_hex() -> Result<String> {
    let mut buf = [0u8; 16];
    super::os::random_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The Patroni configuration of member `index`.
pub fn member_config(
    scope: &str,
    name: &str,
    index: usize,
    ports: &Ports,
    paths: &LabPaths,
    secrets: &Secrets,
) -> Result<Value> {
    let name = name.to_string();
    let &(rest, pg) = ports
        .members
        .get(index)
        .with_context(|| format!("no ports for member {name}"))?;
    let auth = json!({"username": REST_USER, "password": secrets.restapi});
    Ok(json!({
        "scope": scope,
        "name": name,
        "restapi": {
            "listen": format!("127.0.0.1:{rest}"),
            "connect_address": format!("127.0.0.1:{rest}"),
            "authentication": auth,
        },
        // patronictl reads its credentials here (PATRONICTL_CONFIG_FILE=DIR/config/pg0.yml).
        "ctl": {"authentication": auth},
        "etcd3": {"hosts": format!("127.0.0.1:{}", ports.etcd_client)},
        "bootstrap": {
            "dcs": {
                // Short timings so failover, lag and repairs show within seconds.
                "ttl": 20,
                "loop_wait": 2,
                "retry_timeout": 5,
                "maximum_lag_on_failover": 1048576,
                "postgresql": {
                    "use_pg_rewind": true,
                    "use_slots": true,
                    "parameters": {"wal_log_hints": "on", "wal_keep_size": "128MB"},
                },
            },
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": format!("127.0.0.1:{pg}"),
            "connect_address": format!("127.0.0.1:{pg}"),
            "data_dir": paths.data(&name),
            "bin_dir": PG_BIN_DIR,
            // Not the user's ~/.pgpass: labs side by side must not share it.
            "pgpass": paths.run().join(format!("pgpass.{name}")),
            "authentication": {
                "replication": {"username": "replicator", "password": secrets.replication},
                "superuser": {"username": "postgres", "password": secrets.superuser},
            },
            "pg_hba": [
                "local all all trust",
                "host replication replicator 127.0.0.1/32 md5",
                "host all all 127.0.0.1/32 md5",
            ],
            // Archiving on, to a command that succeeds and keeps nothing: `lab break archive`
            // makes it fail (ALTER SYSTEM), so doctor's archive check can be seen failing.
            "parameters": {
                "unix_socket_directories": paths.run(),
                "archive_mode": "on",
                "archive_command": "/bin/true",
            },
            // Without a fast checkpoint every replica build and reinit waits ~60 s for a
            // spread checkpoint on the leader.
            "basebackup": [{"checkpoint": "fast"}],
        },
    }))
}

/// Moves a member's configuration onto its own host (`lab up --netns`): its REST API and
/// PostgreSQL on `me`, etcd at `etcd`, and the lab's `subnet` (where the other members and
/// the host are) let in by pg_hba.
pub fn place(config: &mut Value, me: std::net::Ipv4Addr, etcd: std::net::Ipv4Addr, subnet: &str) {
    let port_of = |v: &Value| {
        v.as_str()
            .and_then(|s| s.rsplit_once(':'))
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    };
    let rest = port_of(&config["restapi"]["listen"]);
    let pg = port_of(&config["postgresql"]["listen"]);
    let etcd_port = port_of(&config["etcd3"]["hosts"]);
    for (section, port) in [("restapi", &rest), ("postgresql", &pg)] {
        config[section]["listen"] = format!("{me}:{port}").into();
        config[section]["connect_address"] = format!("{me}:{port}").into();
    }
    config["etcd3"]["hosts"] = format!("{etcd}:{etcd_port}").into();
    if let Some(hba) = config["postgresql"]["pg_hba"].as_array_mut() {
        hba.push(format!("host replication replicator {subnet} md5").into());
        hba.push(format!("host all all {subnet} md5").into());
    }
}

/// The superuser password written in a member config (psql needs it for TCP logins).
pub fn superuser_password(config_yaml: &str) -> Result<String> {
    let v: Value = crate::yaml::from_str(config_yaml)
        .map_err(anyhow::Error::msg)
        .context("the member config is not YAML")?;
    v["postgresql"]["authentication"]["superuser"]["password"]
        .as_str()
        .map(str::to_owned)
        .context("the member config has no superuser password")
}

pub fn to_yaml(config: &Value) -> Result<String> {
    crate::yaml::to_string(config).context("cannot encode the Patroni config as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn fixed_layout_matches_the_documented_offsets() {
        let p = Ports::fixed(40000, 3).unwrap();
        assert_eq!((p.etcd_client, p.etcd_peer), (40000, 40001));
        assert_eq!(
            p.members,
            vec![(40002, 40003), (40004, 40005), (40006, 40007)]
        );
        assert!(Ports::fixed(65530, 3).is_err());
        assert!(Ports::fixed(80, 1).is_err());
    }

    #[test]
    fn picked_ports_are_distinct() {
        let p = Ports::pick(3).unwrap();
        let mut all = p.all();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8);
    }

    #[test]
    fn member_config_has_what_the_lab_relies_on() {
        let paths = LabPaths::new(Path::new("/tmp/lab")).unwrap();
        let ports = Ports::fixed(40000, 2).unwrap();
        let secrets = Secrets::generate().unwrap();
        let c = member_config("demo", "pg1", 1, &ports, &paths, &secrets).unwrap();
        assert_eq!(c["name"], "pg1");
        assert_eq!(c["restapi"]["listen"], "127.0.0.1:40004");
        assert_eq!(c["restapi"]["authentication"]["username"], "patrol");
        assert_eq!(
            c["ctl"]["authentication"]["password"],
            secrets.restapi.as_str()
        );
        assert_eq!(c["etcd3"]["hosts"], "127.0.0.1:40000");
        assert_eq!(c["postgresql"]["listen"], "127.0.0.1:40005");
        assert_eq!(c["postgresql"]["basebackup"][0]["checkpoint"], "fast");
        assert_eq!(c["postgresql"]["data_dir"], "/tmp/lab/data/pg1");
        assert_eq!(c["bootstrap"]["dcs"]["loop_wait"], 2);
        let yaml = to_yaml(&c).unwrap();
        assert_eq!(superuser_password(&yaml).unwrap(), secrets.superuser);
    }

    #[test]
    fn place_moves_every_address_onto_the_members_host() {
        let paths = LabPaths::new(Path::new("/tmp/lab")).unwrap();
        let ports = Ports::fixed(40000, 2).unwrap();
        let secrets = Secrets::generate().unwrap();
        let mut c = member_config("demo", "pg1", 1, &ports, &paths, &secrets).unwrap();
        let me = "10.70.1.11".parse().unwrap();
        place(&mut c, me, "10.70.1.2".parse().unwrap(), "10.70.1.0/24");
        assert_eq!(c["restapi"]["listen"], "10.70.1.11:40004");
        assert_eq!(c["restapi"]["connect_address"], "10.70.1.11:40004");
        assert_eq!(c["postgresql"]["listen"], "10.70.1.11:40005");
        assert_eq!(c["postgresql"]["connect_address"], "10.70.1.11:40005");
        assert_eq!(c["etcd3"]["hosts"], "10.70.1.2:40000");
        let hba: Vec<&str> = c["postgresql"]["pg_hba"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(hba.contains(&"host replication replicator 10.70.1.0/24 md5"));
        assert!(hba.contains(&"host all all 10.70.1.0/24 md5"));
    }
}
