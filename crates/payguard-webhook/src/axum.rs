//! [`VerifiedWebhook`]: an axum extractor that reads the raw body (up to the
//! verifier's limit) and verifies it before the handler runs.

use crate::error::VerifyError;
use crate::verified::Verified;
use crate::verifier::Verifier;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;

/// A verified webhook delivery, extracted from the request. The verifier
/// comes from the router's state (`Arc<Verifier>: FromRef<S>`), so each
/// webhook route can carry its own, for example with
/// `post(handler).with_state(Arc::new(verifier))`.
///
/// Rejections: 413 when the body exceeds
/// [`Verifier::max_body_bytes`], 400 when it cannot be read, and 401 with
/// no detail when verification fails (the reason is logged at `debug` level
/// by the caller if wanted: see [`WebhookRejection::verify_error`]).
///
/// ```
/// use axum::{Router, routing::post};
/// use payguard_webhook::{Provider, Verifier, VerifiedWebhook};
/// use std::sync::Arc;
///
/// async fn paystack(VerifiedWebhook(delivery): VerifiedWebhook) -> &'static str {
///     let _event = delivery.event_id(); // de-duplicate on this
///     "ok"
/// }
///
/// let verifier = Verifier::builder(Provider::Paystack).secret("sk_test_x").build()?;
/// let app: Router = Router::new().route("/webhooks/paystack", post(paystack).with_state(Arc::new(verifier)));
/// # let _ = app;
/// # Ok::<(), payguard_webhook::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct VerifiedWebhook(pub Verified<Bytes>);

/// Why [`VerifiedWebhook`] refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookRejection {
    /// The body is larger than the verifier allows (413).
    #[error("webhook body too large")]
    TooLarge,
    /// The body could not be read (400).
    #[error("webhook body could not be read")]
    UnreadableBody,
    /// Verification failed (401). The reason is the source, for logs; it
    /// never reaches the client.
    #[error("webhook signature verification failed")]
    Unverified(#[source] VerifyError),
}

impl WebhookRejection {
    /// The verification error, for logging; never sent to the client.
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match self {
            WebhookRejection::Unverified(error) => Some(error),
            _ => None,
        }
    }

    /// A stable code, also the problem body's `code`:
    /// `webhook_too_large`, `webhook_unreadable` or `webhook_unverified`.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookRejection::TooLarge => "webhook_too_large",
            WebhookRejection::UnreadableBody => "webhook_unreadable",
            WebhookRejection::Unverified(_) => "webhook_unverified",
        }
    }

    /// The HTTP status of the rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookRejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookRejection::UnreadableBody => StatusCode::BAD_REQUEST,
            WebhookRejection::Unverified(_) => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let code = self.code();
        let title = self.to_string();
        let status = self.status();
        let body = format!(
            r#"{{"type":"about:blank","title":"{title}","status":{},"code":"{code}"}}"#,
            status.as_u16()
        );
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl<S> FromRequest<S> for VerifiedWebhook
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let limit = verifier.max_body_bytes();
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(WebhookRejection::TooLarge);
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(WebhookRejection::TooLarge);
            }
            Err(_) => return Err(WebhookRejection::UnreadableBody),
        };
        verifier
            .verify(&parts.headers, bytes)
            .map(VerifiedWebhook)
            .map_err(WebhookRejection::Unverified)
    }
}
