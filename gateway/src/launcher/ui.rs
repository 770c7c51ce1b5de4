//! The Spark UI of the drivers sparkgate runs: on, on a port of its own, and guarded by
//! sparkgate's filter ([`UI_AUTH_CLASS`]) so only sparkgate reads it. sparkgate reads a
//! statement's jobs from its REST API to show progress (see `driver::progress`).

use sha2::Digest;

use super::submit::DriverCommand;
use super::DriverSecret;

/// sparkgate's servlet filter on the driver's UI, and its source (compiled with the driver's own
/// Spark; Spark 4+, whose servlets are `jakarta.servlet`).
pub const UI_AUTH_CLASS: &str = "sparkgate.UiAuth";
pub const UI_AUTH_SOURCE: &str = include_str!("UiAuth.scala");

/// The `Authorization` header value the driver's UI filter takes: derived from the driver's
/// secret, so it opens that driver's UI and nothing else.
pub fn authorization(secret: &DriverSecret) -> Option<String> {
    if secret.is_empty() {
        return None;
    }
    let digest = sha2::Sha256::digest(format!("sparkgate-ui:{}", secret.expose()).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("Bearer {hex}"))
}

/// Turns the driver's UI on at `port`, behind sparkgate's filter (in `jar`, which the caller
/// puts on the class path). Where it listens is the launcher's business (loopback for local
/// drivers; the Pod's network, which only sparkgate may reach, on Kubernetes).
pub fn enable(submit: &mut DriverCommand, port: u16) {
    submit
        .spark("spark.ui.enabled", "true")
        .spark("spark.ui.port", port.to_string())
        // Another free port is not what sparkgate would look at.
        .spark("spark.port.maxRetries", "0")
        .spark("spark.ui.filters", UI_AUTH_CLASS)
        .spark("spark.ui.showConsoleProgress", "false");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_filters_digest_of_the_secret() {
        assert_eq!(authorization(&DriverSecret::default()), None);
        let header = authorization(&DriverSecret::from_value("abc".into())).unwrap();
        // sha256("sparkgate-ui:abc"), as UiAuth.scala computes it.
        let expected = sha2::Sha256::digest(b"sparkgate-ui:abc");
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(header, format!("Bearer {hex}"));
        assert_ne!(
            header,
            authorization(&DriverSecret::from_value("abd".into())).unwrap()
        );
    }
}
