//! The spark-submit command line of a driver, one builder for every launcher, with the one rule
//! for which settings a tenant may not change.
//!
//! A tenant's `spark_conf` and `hive_conf` go in first. Then a launcher adds its own values in
//! two kinds: defaults ([`DriverCommand::default_spark`]), which a tenant's own setting keeps,
//! and decisions ([`DriverCommand::spark`], [`DriverCommand::hive`]), which always win over it
//! (where the driver listens, how sparkgate reaches it, which tenant and identity it serves).
//! Keys under [`RESERVED`] are the tenant's in no case, even where no launcher sets them: they
//! would change who the driver runs as, or open it to clients other than sparkgate.

use std::collections::BTreeMap;

use tracing::warn;

use super::DriverSpec;

/// The HiveServer2 class every driver runs.
pub const THRIFT_SERVER_CLASS: &str = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2";

/// Setting prefixes only sparkgate sets. A tenant's value for one is dropped with a warning.
pub const RESERVED: &[&str] = &[
    // Who the driver and its executors run as, and where.
    "spark.kubernetes.authenticate",
    "spark.kubernetes.namespace",
    "spark.sparkgate.",
    // How clients reach the driver and prove who they are: only through sparkgate.
    "hive.server2.authentication",
    "hive.server2.custom.authentication.",
    "hive.server2.thrift.port",
    "hive.server2.thrift.bind.host",
    "hive.server2.thrift.http.",
    "hive.server2.transport.mode",
    "hive.server2.use.SSL",
    "hive.server2.keystore.",
    // Who may act for whom on the driver: sparkgate's service user, for its users only.
    "hadoop.proxyuser.",
    "spark.hadoop.hadoop.proxyuser.",
];

/// The driver's class path before Spark's jars: sparkgate's provider goes first in it, a
/// tenant's own entries after.
const EXTRA_CLASS_PATH: &str = "spark.driver.extraClassPath";

/// Whether a setting is sparkgate's alone (see [`RESERVED`]).
pub fn is_reserved(key: &str) -> bool {
    RESERVED.iter().any(|prefix| key.starts_with(prefix))
}

/// The settings and options of one driver's spark-submit.
#[derive(Debug, Clone)]
pub struct DriverCommand {
    tenant: String,
    /// The tenant's own settings as configured, to tell a decision that overrides one.
    tenant_spark: BTreeMap<String, String>,
    tenant_hive: BTreeMap<String, String>,
    spark: BTreeMap<String, String>,
    hive: BTreeMap<String, String>,
    options: Vec<(String, String)>,
}

impl DriverCommand {
    /// A command for a driver of `spec`'s tenant: its settings, minus the reserved ones.
    pub fn new(spec: &DriverSpec) -> Self {
        let keep = |conf: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            conf.iter()
                .filter(|(key, _)| {
                    let reserved = is_reserved(key);
                    if reserved {
                        warn!(tenant = %spec.tenant, %key, "ignoring a tenant setting only sparkgate sets");
                    }
                    !reserved
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let spark = keep(&spec.spark_conf);
        let hive = keep(&spec.hive_conf);
        Self {
            tenant: spec.tenant.clone(),
            tenant_spark: spark.clone(),
            tenant_hive: hive.clone(),
            spark,
            hive,
            options: vec![
                ("--class".into(), THRIFT_SERVER_CLASS.into()),
                ("--driver-memory".into(), spec.driver_memory.clone()),
            ],
        }
    }

    /// A spark-submit option (`--master`, `--name`, ...), in the order given.
    pub fn option(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.options.push((name.into(), value.into()));
        self
    }

    /// A Spark setting the tenant's own value (if any) keeps.
    pub fn default_spark(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.spark.entry(key.into()).or_insert_with(|| value.into());
        self
    }

    /// A Spark setting sparkgate decides.
    pub fn spark(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        decide(
            &mut self.spark,
            &self.tenant_spark,
            &self.tenant,
            key,
            value.into(),
        );
        self
    }

    /// A Hive setting sparkgate decides.
    pub fn hive(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        decide(
            &mut self.hive,
            &self.tenant_hive,
            &self.tenant,
            key,
            value.into(),
        );
        self
    }

    /// The driver takes connections from sparkgate only: those with its secret, checked by
    /// sparkgate's provider (`jar`, put first on the driver's class path), which the launcher
    /// hands over in [`DRIVER_SECRET_ENV`](super::DRIVER_SECRET_ENV). sparkgate's
    /// `service_user` may name any user with `hive.server2.proxy.user` (its connections carry
    /// every session of the driver; the user was authenticated by sparkgate).
    pub fn sparkgate_only(&mut self, jar: &str, service_user: &str) -> &mut Self {
        let class_path = match self.tenant_spark.get(EXTRA_CLASS_PATH) {
            Some(theirs) if !theirs.is_empty() => format!("{jar}:{theirs}"),
            _ => jar.to_owned(),
        };
        self.spark.insert(EXTRA_CLASS_PATH.into(), class_path);
        let proxy = format!("spark.hadoop.hadoop.proxyuser.{service_user}");
        self.spark(&format!("{proxy}.hosts"), "*")
            .spark(&format!("{proxy}.groups"), "*")
            .hive("hive.server2.authentication", "CUSTOM")
            .hive(
                "hive.server2.custom.authentication.class",
                super::DRIVER_AUTH_CLASS,
            )
    }

    /// The value a Spark setting will have.
    pub fn spark_value(&self, key: &str) -> Option<&str> {
        self.spark.get(key).map(String::as_str)
    }

    /// The value a Hive setting will have.
    pub fn hive_value(&self, key: &str) -> Option<&str> {
        self.hive.get(key).map(String::as_str)
    }

    /// spark-submit's arguments: options, `--conf`s, the primary resource, `--hiveconf`s.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (name, value) in &self.options {
            args.push(name.clone());
            args.push(value.clone());
        }
        for (key, value) in &self.spark {
            args.push("--conf".into());
            args.push(format!("{key}={value}"));
        }
        // HiveThriftServer2 has no jar of its own: it is on Spark's class path.
        args.push("spark-internal".into());
        for (key, value) in &self.hive {
            args.push("--hiveconf".into());
            args.push(format!("{key}={value}"));
        }
        args
    }
}

fn decide(
    conf: &mut BTreeMap<String, String>,
    tenant_conf: &BTreeMap<String, String>,
    tenant: &str,
    key: &str,
    value: String,
) {
    if tenant_conf.get(key).is_some_and(|theirs| *theirs != value) {
        warn!(%tenant, %key, "ignoring a tenant setting sparkgate decides");
    }
    conf.insert(key.into(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(spark: &[(&str, &str)], hive: &[(&str, &str)]) -> DriverSpec {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        DriverSpec {
            tenant: "analytics".into(),
            driver_memory: "1g".into(),
            spark_conf: map(spark),
            hive_conf: map(hive),
        }
    }

    #[test]
    fn sparkgate_decisions_win_and_defaults_yield() {
        let mut cmd = DriverCommand::new(&spec(
            &[
                ("spark.driver.host", "evil"),
                ("spark.sql.shuffle.partitions", "8"),
            ],
            &[("hive.exec.scratchdir", "/mine")],
        ));
        cmd.spark("spark.driver.host", "127.0.0.1")
            .default_spark("spark.sql.shuffle.partitions", "200")
            .default_spark("spark.ui.enabled", "false")
            .hive("hive.exec.scratchdir", "/ours");
        assert_eq!(cmd.spark_value("spark.driver.host"), Some("127.0.0.1"));
        assert_eq!(cmd.spark_value("spark.sql.shuffle.partitions"), Some("8"));
        assert_eq!(cmd.spark_value("spark.ui.enabled"), Some("false"));
        assert_eq!(cmd.hive_value("hive.exec.scratchdir"), Some("/ours"));
    }

    #[test]
    fn reserved_keys_never_come_from_a_tenant() {
        let cmd = DriverCommand::new(&spec(
            &[
                (
                    "spark.kubernetes.authenticate.driver.serviceAccountName",
                    "other-tenant",
                ),
                ("spark.sparkgate.tenant", "other"),
            ],
            &[
                ("hive.server2.authentication", "NOSASL"),
                ("hive.server2.thrift.port", "10000"),
                ("hive.server2.thrift.bind.host", "0.0.0.0"),
                ("hive.server2.transport.mode", "http"),
                ("hive.metastore.uris", "thrift://meta:9083"),
            ],
        ));
        let args = cmd.args();
        for refused in [
            "serviceAccountName",
            "spark.sparkgate",
            "authentication",
            "thrift.port",
            "bind.host",
            "transport",
        ] {
            assert!(
                !args.iter().any(|a| a.contains(refused)),
                "{refused} in {args:?}"
            );
        }
        assert!(args.contains(&"hive.metastore.uris=thrift://meta:9083".to_string()));
    }

    #[test]
    fn a_driver_takes_sparkgate_only_and_keeps_the_tenants_class_path() {
        let mut cmd = DriverCommand::new(&spec(
            &[
                ("spark.driver.extraClassPath", "/opt/udfs.jar"),
                ("spark.hadoop.hadoop.proxyuser.mallory.hosts", "*"),
            ],
            &[
                ("hive.server2.custom.authentication.class", "evil.AllowAll"),
                ("hadoop.proxyuser.mallory.groups", "*"),
            ],
        ));
        cmd.sparkgate_only("/w/driver-auth.jar", "sparkgate");
        assert_eq!(
            cmd.spark_value("spark.driver.extraClassPath"),
            Some("/w/driver-auth.jar:/opt/udfs.jar")
        );
        assert_eq!(
            cmd.hive_value("hive.server2.authentication"),
            Some("CUSTOM")
        );
        assert_eq!(
            cmd.hive_value("hive.server2.custom.authentication.class"),
            Some("sparkgate.DriverAuth")
        );
        assert_eq!(
            cmd.spark_value("spark.hadoop.hadoop.proxyuser.sparkgate.hosts"),
            Some("*")
        );
        let args = cmd.args();
        assert!(
            !args
                .iter()
                .any(|a| a.contains("mallory") || a.contains("evil")),
            "{args:?}"
        );
    }

    #[test]
    fn the_charts_copies_of_the_driver_password_provider_and_ui_filter_are_these() {
        // The chart compiles it with the driver image (Helm reads files inside the chart only).
        let chart = include_str!("../../../charts/sparkgate/files/DriverAuth.scala");
        assert_eq!(
            chart,
            super::super::DRIVER_AUTH_SOURCE,
            "copy gateway/src/launcher/DriverAuth.scala to charts/sparkgate/files/"
        );
        let chart = include_str!("../../../charts/sparkgate/files/UiAuth.scala");
        assert_eq!(
            chart,
            super::super::ui::UI_AUTH_SOURCE,
            "copy gateway/src/launcher/UiAuth.scala to charts/sparkgate/files/"
        );
    }

    #[test]
    fn args_put_spark_settings_before_the_resource_and_hive_settings_after() {
        let mut cmd = DriverCommand::new(&spec(&[], &[]));
        cmd.option("--master", "local[2]")
            .spark("spark.ui.enabled", "false")
            .hive("hive.server2.thrift.port", "20100");
        let args = cmd.args();
        let at = |s: &str| args.iter().position(|a| a == s).unwrap();
        assert_eq!(
            args[..2],
            ["--class".to_string(), THRIFT_SERVER_CLASS.to_string()]
        );
        assert!(at("--master") < at("spark.ui.enabled=false"));
        assert!(at("spark.ui.enabled=false") < at("spark-internal"));
        assert!(at("spark-internal") < at("hive.server2.thrift.port=20100"));
    }
}
