//! OpenSession: who the session's user is, which tenant it runs for, and which driver.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use tracing::{info, warn};

use sparkgate_auth::{Credential, Principal};

use super::cache::{CacheScope, SessionCacheState};
use super::client::ClientFamily;
use super::stock::{StockKey, Stocked};
use super::table::Session;
use super::{encoded, CallContext, CallHandler, Reply};
use crate::error::{GatewayError, OpenSessionRetry};
use crate::pool::DriverLease;
use crate::tenant::{TenantConfig, TENANT_KEYS};

/// The newest protocol version sparkgate understands; newer client requests are capped to it.
pub const MAX_PROTOCOL: t::TProtocolVersion = hive_thrift::message::NEWEST_PROTOCOL;
/// The OpenSession configuration key the Hive JDBC driver (2.3+) reads its fetch size from.
pub const FETCH_SIZE_KEY: &str = "hive.server2.thrift.resultset.default.fetch.size";
/// The OpenSession configuration key that asks to run the session as another user.
pub const PROXY_USER_KEY: &str = "hive.server2.proxy.user";
/// How long the driver holds a status call of the session for a running operation.
const LONG_POLL_KEY: &str = "hive.server2.long.polling.timeout";
/// Spark's datetime pattern rules. Superset writes Hive SQL, whose patterns are Java's
/// SimpleDateFormat (its weekly grains use `'u'`, which Spark 3+ refuses under its own rules):
/// Python clients' sessions start with Spark's legacy (SimpleDateFormat) rules, unless they set
/// their own.
const TIME_PARSER_KEY: &str = "spark.sql.legacy.timeParserPolicy";

impl CallHandler {
    fn is_admin(&self, principal: &Principal) -> bool {
        let server = &self.config.server;
        server.admin_users.contains(&principal.user)
            || principal
                .groups
                .iter()
                .any(|g| server.admin_groups.contains(g))
    }
    pub(super) async fn open_session(
        &self,
        ctx: &CallContext,
        req: &mut t::TOpenSessionReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let principal = match &ctx.principal {
            Some(principal) => principal.clone(),
            None => {
                // NOSASL: the transport carried no identity; OpenSession names the user.
                let user = req.username.clone().filter(|u| !u.is_empty());
                let user = user.as_deref().unwrap_or("anonymous");
                self.auth
                    .authenticate(&Credential::Anonymous { user }, ctx.peer.ip())
                    .await
                    .map_err(GatewayError::Auth)?
            }
        };
        let max = self.config.server.max_sessions_per_connection;
        if self.table.count_owned_by(&ctx.owner) >= max {
            return Err(GatewayError::TooManySessions { max });
        }
        let family = ClientFamily::of(req).map_err(GatewayError::BadSessionSetting)?;
        let configuration = req.configuration.get_or_insert_with(Default::default);
        let mut requested = None;
        for key in TENANT_KEYS {
            if let Some(value) = configuration.remove(key) {
                requested = Some(value);
            }
        }
        let user = match configuration.remove(PROXY_USER_KEY) {
            Some(proxy_user) if self.is_admin(&principal) => proxy_user,
            Some(proxy_user) => {
                return Err(GatewayError::ProxyUserRefused {
                    user: principal.user.clone(),
                    proxy_user,
                })
            }
            None => principal.user.clone(),
        };
        let tenant = self
            .tenants
            .decide(&principal, requested.as_deref())
            .map_err(GatewayError::Tenant)?;
        let client_protocol = req.client_protocol;
        if client_protocol > MAX_PROTOCOL {
            req.client_protocol = MAX_PROTOCOL;
        }
        req.username = Some(user.clone());
        req.password = None;
        // The driver connection is sparkgate's own; this names the session's user.
        let configuration = req.configuration.get_or_insert_with(Default::default);
        configuration.insert(PROXY_USER_KEY.to_owned(), user.clone());
        configuration.insert(
            LONG_POLL_KEY.to_owned(),
            format!("{}ms", self.config.backend.status_poll.as_millis()),
        );
        if family == ClientFamily::Python
            && !configuration.keys().any(|k| k.ends_with(TIME_PARSER_KEY))
        {
            configuration.insert(format!("set:hiveconf:{TIME_PARSER_KEY}"), "LEGACY".into());
        }
        let mut cache_settings = configuration.clone();
        // Only with reuse on: its key copies the whole configuration.
        let reuse_ttl = self.config.server.session_reuse_ttl;
        let stock_key = (!reuse_ttl.is_zero()).then(|| StockKey {
            user: user.clone(),
            tenant: tenant.name.clone(),
            configuration: cache_settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            client_protocol: req.client_protocol.0,
            family: family.name(),
        });
        // The user is the cache key's scope (or left out of it, for a tenant-wide scope).
        cache_settings.remove(PROXY_USER_KEY);
        if let Some(key) = stock_key.as_ref() {
            if let Some(kept) = self.stock.take(key, reuse_ttl) {
                return Ok(self.reopen(ctx, kept, key.clone(), seqid));
            }
        }
        let request = Hs2Request::OpenSession(req.clone());
        // A session other replicas serve too must not end with this replica's connection.
        let untie = self.config.http.shared_sessions && matches!(ctx.owner, super::Owner::User(_));
        let (reply, addr, lease) = self.place_session(tenant, &user, &request, untie).await?;
        let Hs2Response::OpenSession(mut resp) = Hs2Response::decode_for(&request, &reply)
            .map_err(|e| GatewayError::BackendLost {
                addr: addr.clone(),
                method: "OpenSession",
                detail: e.to_string(),
            })?
        else {
            unreachable!("reply decoded for OpenSession");
        };
        let Hs2Request::OpenSession(opened_with) = request else {
            unreachable!("built as OpenSession");
        };
        let succeeded = matches!(
            resp.status.status_code,
            t::TStatusCode::SUCCESS_STATUS | t::TStatusCode::SUCCESS_WITH_INFO_STATUS
        );
        if let (true, Some(backend_handle)) = (succeeded, resp.session_handle.take()) {
            let (handle, sealed) = self.mint_session_handle(&ctx.owner, |owner| {
                super::sealed::SealedSession::on_driver(
                    owner,
                    &user,
                    &tenant.name,
                    family,
                    lease.as_ref(),
                    &addr,
                    &backend_handle,
                )
            });
            let mut session = Session::new(
                handle.clone(),
                ctx.owner.clone(),
                user.clone(),
                tenant.name.clone(),
                addr.clone(),
                backend_handle,
            );
            session.spark_ui = lease.as_ref().and_then(spark_ui_of);
            session.lease = lease;
            session.origin = origin(ctx, &principal.user);
            session.sealed = sealed;
            self.configure_session(&mut session, tenant, family);
            if tenant.replay_sessions {
                session.replay = Some(std::sync::Mutex::new(super::replay::ReplayLog::new(
                    opened_with,
                )));
            }
            session.set_cache_state(SessionCacheState::new(
                cache_settings.iter(),
                format!("{:?}/{family:?}", resp.server_protocol_version),
            ));
            resp.configuration
                .get_or_insert_with(Default::default)
                .entry(FETCH_SIZE_KEY.to_owned())
                .or_insert_with(|| self.config.server.default_fetch_size.to_string());
            if let Some(key) = stock_key {
                session.reuse = Some(Box::new((key, resp.clone())));
            }
            let session = self.table.insert(session);
            self.recorders.audit.record(super::record::session_record(
                "session_open",
                &session,
                None,
            ));
            info!(
                session.id = %session.id(),
                user = %sparkgate_auth::clip(&user),
                authenticated_as = %sparkgate_auth::clip(&principal.user),
                tenant = %tenant.name,
                driver = %addr,
                client_protocol = client_protocol.0,
                client = family.name(),
                server_protocol = resp.server_protocol_version.0,
                "session opened"
            );
            resp.session_handle = Some(handle);
        }
        Ok(encoded(Hs2Response::OpenSession(resp), seqid))
    }

    /// OpenSession answered with a kept driver session (no driver round trip).
    fn reopen(&self, ctx: &CallContext, kept: Stocked, key: StockKey, seqid: i32) -> Reply {
        let was = &kept.session;
        let (handle, sealed) = self.mint_session_handle(&ctx.owner, |owner| {
            super::sealed::SealedSession::on_driver(
                owner,
                &was.user,
                &was.tenant,
                was.family,
                was.lease.as_ref(),
                &was.backend_addr,
                &was.backend_handle,
            )
        });
        let mut session = kept.session.rehome(handle.clone(), ctx.owner.clone());
        session.sealed = sealed;
        session.reuse = Some(Box::new((key, kept.opened.clone())));
        let authenticated = ctx.principal.as_ref().map_or(&session.user, |p| &p.user);
        session.origin = origin(ctx, &authenticated.clone());
        let session = self.table.insert(session);
        self.recorders.audit.record(super::record::session_record(
            "session_open",
            &session,
            Some("reused a kept driver session"),
        ));
        info!(
            session.id = %session.id(),
            user = %sparkgate_auth::clip(&session.user),
            tenant = %session.tenant,
            driver = %session.backend_addr,
            "session opened (a kept driver session reused)"
        );
        let mut resp = kept.opened;
        resp.session_handle = Some(handle);
        encoded(Hs2Response::OpenSession(resp), seqid)
    }

    /// Opens the session on a driver of `tenant`'s pool (waiting for one if needed; a driver
    /// that refuses the connection is taken out and another tried).
    /// Returns the driver's reply, its address and the session's place in the pool.
    pub(super) async fn place_session(
        &self,
        tenant: &TenantConfig,
        user: &str,
        open: &Hs2Request,
        untie: bool,
    ) -> Result<(Bytes, String, Option<DriverLease>), GatewayError> {
        let pool = self
            .pools
            .get(&tenant.name)
            .ok_or_else(|| GatewayError::NoPool {
                tenant: tenant.name.clone(),
            })?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let waited = Instant::now();
            let lease = pool
                .acquire(|| {
                    info!(
                        tenant = %tenant.name,
                        user,
                        "no driver free for the session yet; waiting for one to start (cold start)"
                    )
                })
                .await?;
            if waited.elapsed() > Duration::from_millis(100) {
                info!(
                    tenant = %tenant.name,
                    driver = %lease.driver_id,
                    waited_secs = waited.elapsed().as_secs_f64(),
                    "session waited for a driver"
                );
            }
            self.links.introduce(&lease.address, &lease.secret);
            match self.call_driver_on_link(&lease.address, open, untie).await {
                Ok((reply, _)) => {
                    let addr = lease.address.clone();
                    return Ok((reply, addr, Some(lease)));
                }
                Err(e) if attempts < 3 => match e.open_session_retry() {
                    Some(OpenSessionRetry::OtherDriver) => {
                        warn!(tenant = %tenant.name, driver = %lease.driver_id, error = %e, "placing the session elsewhere");
                        pool.mark_failed(&lease.driver_id);
                        self.links.forget(&lease.address);
                    }
                    Some(OpenSessionRetry::AfterAPause) => {
                        warn!(tenant = %tenant.name, driver = %lease.driver_id, error = %e, "OpenSession failed on the driver's connection; trying again");
                        tokio::time::sleep(self.config.pools.reconcile_every).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

impl CallHandler {
    /// What a session takes from its tenant's settings and its client's family.
    pub(super) fn configure_session(
        &self,
        session: &mut Session,
        tenant: &TenantConfig,
        family: ClientFamily,
    ) {
        session.rules = tenant.statement_rules();
        session.family = family;
        session.concise_errors = tenant.error_detail.concise_for(family);
        session.max_query_time = tenant.max_query_time;
        session.cache_ttl = Some(tenant.cache_ttl.unwrap_or(self.config.cache.ttl))
            .filter(|ttl| !ttl.is_zero())
            // A cached answer lives on one replica: with HTTP calls spread over replicas, the
            // session's results come from its driver.
            .filter(|_| !(self.config.http.shared_sessions && session.sealed.is_some()));
        session.cache_scope = match tenant.cache_scope {
            CacheScope::User => session.user.clone(),
            CacheScope::Tenant => String::new(),
        };
    }
}

/// The Spark UI of a session's driver, where its statements' progress is read.
pub(super) fn spark_ui_of(lease: &DriverLease) -> Option<crate::driver::progress::SparkUi> {
    spark_ui(lease.ui.as_deref(), &lease.secret)
}

/// A driver's Spark UI at `ui`, opened with the driver's password.
pub(super) fn spark_ui(
    ui: Option<&str>,
    secret: &crate::launcher::DriverSecret,
) -> Option<crate::driver::progress::SparkUi> {
    Some(crate::driver::progress::SparkUi {
        base: ui?.trim_end_matches('/').to_owned(),
        authorization: crate::launcher::ui::authorization(secret),
    })
}

/// Who opened a session, from where, over which transport (its audit records' fields).
fn origin(ctx: &CallContext, authenticated_user: &str) -> crate::audit::Origin {
    crate::audit::Origin {
        authenticated_user: authenticated_user.to_owned(),
        client_addr: Some(ctx.peer),
        transport: ctx.owner.transport(),
    }
}
