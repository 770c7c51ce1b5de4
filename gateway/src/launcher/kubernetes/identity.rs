//! Who a tenant's drivers run as: its ServiceAccount and the cloud role annotations on it, and
//! the checks a tenant must pass before any of its objects is made.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use tracing::info;

use super::{KubernetesConfig, FIELD_MANAGER, MANAGED_BY, TENANT_LABEL};
use crate::tenant::TenantConfig;

/// A tenant's Kubernetes identity.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantIdentity {
    pub service_account: String,
    pub annotations: BTreeMap<String, String>,
}

/// The ServiceAccount a tenant's drivers and executors run as.
pub fn service_account_of(tenant: &TenantConfig) -> String {
    tenant
        .service_account
        .clone()
        .unwrap_or_else(|| format!("sparkgate-{}", tenant.name))
}

/// Whether `name` is a DNS-1123 label (what Pod, Service and ServiceAccount names must be
/// here), at most `max` characters.
fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Why a tenant cannot run on Kubernetes as configured, or its identity is not in place.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("tenant {tenant:?} cannot run on Kubernetes: its name must be lower-case letters, digits and '-', at most 50 characters, not starting or ending with '-'")]
    TenantName { tenant: String },
    #[error("tenant {tenant:?}: service_account {account:?} is not a valid Kubernetes name")]
    AccountName { tenant: String, account: String },
    #[error("tenant {tenant:?} would keep its tables inside each driver Pod (lost with the Pod): set {missing}, or set ephemeral_catalog = true to accept that")]
    EphemeralCatalog { tenant: String, missing: String },
    #[error("tenant {tenant:?}: cannot {action} ServiceAccount {account:?}: {source}")]
    Api {
        tenant: String,
        account: String,
        action: &'static str,
        source: Box<kube::Error>,
    },
    #[error("tenant {tenant:?}: ServiceAccount {account:?} does not exist (kubernetes.manage_service_accounts = false: create it, e.g. with the Helm chart)")]
    NoAccount { tenant: String, account: String },
    #[error("tenant {tenant:?}: ServiceAccount {account:?} lacks the annotation {key}={value}")]
    MissingAnnotation {
        tenant: String,
        account: String,
        key: String,
        value: String,
    },
}

/// Checks, before anything is created, that a tenant's names make valid Kubernetes objects.
/// Driver names are `sg-<tenant>-<8 hex>`; Services need a leading letter, which `sg-` gives.
pub fn validate_tenant(tenant: &TenantConfig) -> Result<(), IdentityError> {
    if !is_dns_label(&tenant.name, 50) {
        return Err(IdentityError::TenantName {
            tenant: tenant.name.clone(),
        });
    }
    let sa = service_account_of(tenant);
    if !is_dns_label(&sa, 63) {
        return Err(IdentityError::AccountName {
            tenant: tenant.name.clone(),
            account: sa,
        });
    }
    if !tenant.ephemeral_catalog {
        let mut missing = Vec::new();
        if !crate::launcher::local::own_catalog(&tenant.hive_conf, &tenant.spark_conf) {
            missing.push("hive_conf \"hive.metastore.uris\" (a shared Hive metastore, e.g. \"thrift://metastore.data:9083\")");
        }
        if !shared_storage(tenant.spark_conf.get("spark.sql.warehouse.dir")) {
            missing.push("spark_conf \"spark.sql.warehouse.dir\" on shared storage (e.g. \"s3a://bucket/warehouse\")");
        }
        if !missing.is_empty() {
            return Err(IdentityError::EphemeralCatalog {
                tenant: tenant.name.clone(),
                missing: missing.join(" and "),
            });
        }
    }
    Ok(())
}

/// Whether a warehouse location is outside the Pod: a URI of a shared file system (`s3a://`,
/// `gs://`, `abfss://`, `hdfs://`, ...), not a local path.
fn shared_storage(location: Option<&String>) -> bool {
    let Some((scheme, rest)) = location.and_then(|l| l.trim().split_once("://")) else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !matches!(scheme.to_ascii_lowercase().as_str(), "file" | "local")
        && !rest.is_empty()
}

/// Applies (or, when sparkgate does not manage them, checks) a tenant's ServiceAccount.
pub(super) async fn ensure_service_account(
    accounts: &Api<ServiceAccount>,
    config: &KubernetesConfig,
    tenant: &str,
    identity: &TenantIdentity,
) -> Result<(), IdentityError> {
    let name = &identity.service_account;
    let api_error = |action| {
        move |source| IdentityError::Api {
            tenant: tenant.to_owned(),
            account: name.clone(),
            action,
            source: Box::new(source),
        }
    };
    if config.manage_service_accounts {
        let account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "labels": { MANAGED_BY: "sparkgate", TENANT_LABEL: tenant },
                "annotations": identity.annotations,
            },
        });
        accounts
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&account),
            )
            .await
            .map_err(api_error("apply"))?;
        info!(%tenant, service_account = %name, "tenant ServiceAccount applied");
        return Ok(());
    }
    let existing = accounts.get_opt(name).await.map_err(api_error("read"))?;
    let Some(existing) = existing else {
        return Err(IdentityError::NoAccount {
            tenant: tenant.to_owned(),
            account: name.clone(),
        });
    };
    let have = existing.metadata.annotations.unwrap_or_default();
    for (key, value) in &identity.annotations {
        if have.get(key) != Some(value) {
            return Err(IdentityError::MissingAnnotation {
                tenant: tenant.to_owned(),
                account: name.clone(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    Ok(())
}
