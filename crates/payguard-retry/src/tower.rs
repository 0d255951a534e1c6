//! [`RetryLayer`]: the same retries as `tower` middleware.

use crate::attempt::Idempotency;
use crate::error::RetryError;
use crate::policy::RetryPolicy;
use payguard_core::{Classify, Outcome, from_error};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Retries calls to the inner service under a [`RetryPolicy`].
///
/// Requests must be `Clone` (each attempt sends a clone) and the inner
/// service `Clone` (each attempt gets a ready clone). `classify` judges the
/// whole result, so a response such as a 503 can be retried; when retrying
/// stops on a response, that response is returned as it is. `idempotency`
/// tells, per request, whether it may be repeated after an ambiguous outcome.
///
/// ```
/// use payguard_core::Outcome;
/// use payguard_retry::{Idempotency, RetryLayer, RetryPolicy};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RetryPolicy::builder().build()?;
/// let layer = RetryLayer::new(policy, |result: &Result<u16, std::io::Error>| match result {
///     Ok(200) => Outcome::Success,
///     Ok(_) => Outcome::Transient,
///     Err(_) => Outcome::Ambiguous,
/// })
/// .idempotency(|_request: &&str| Idempotency::Idempotent);
/// let mut service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_request: &str| async { Ok::<u16, std::io::Error>(200) });
/// let status = service.ready().await?.call("GET /balance").await?;
/// assert_eq!(status, 200);
/// # Ok(())
/// # }
/// ```
pub struct RetryLayer<C, Req> {
    policy: RetryPolicy,
    classify: Arc<C>,
    idempotency: Arc<dyn Fn(&Req) -> Idempotency + Send + Sync>,
}

impl<C, Req> RetryLayer<C, Req> {
    /// Retries under `policy`, judging results with `classify`. Requests are
    /// not idempotent until [`idempotency`](Self::idempotency) says so.
    pub fn new(policy: RetryPolicy, classify: C) -> Self {
        Self {
            policy,
            classify: Arc::new(classify),
            idempotency: Arc::new(|_| Idempotency::NotIdempotent),
        }
    }

    /// Tells, per request, whether it may be repeated.
    pub fn idempotency(
        mut self,
        idempotency: impl Fn(&Req) -> Idempotency + Send + Sync + 'static,
    ) -> Self {
        self.idempotency = Arc::new(idempotency);
        self
    }
}

impl<C, Req> Clone for RetryLayer<C, Req> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            classify: Arc::clone(&self.classify),
            idempotency: Arc::clone(&self.idempotency),
        }
    }
}

impl<C, Req> fmt::Debug for RetryLayer<C, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Layer<S> for RetryLayer<C, Req> {
    type Service = RetryService<S, C, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RetryLayer`].
pub struct RetryService<S, C, Req> {
    inner: S,
    layer: RetryLayer<C, Req>,
}

impl<S: Clone, C, Req> Clone for RetryService<S, C, Req> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C, Req> fmt::Debug for RetryService<S, C, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// A failed attempt inside the service: the response or error, and its
/// outcome.
enum Failed<R, E> {
    Response(R, Outcome),
    Error(E, Outcome),
}

impl<S, C, Req> Service<Req> for RetryService<S, C, Req>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = RetryError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, RetryError<S::Error>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each attempt readies its own clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        let idempotency = (layer.idempotency)(&request);
        Box::pin(async move {
            let classify = Arc::clone(&layer.classify);
            let result = layer
                .policy
                .retry(move |_attempt| {
                    let mut service = inner.clone();
                    let request = request.clone();
                    let classify = Arc::clone(&classify);
                    async move {
                        if let Err(error) = poll_fn(|cx| service.poll_ready(cx)).await {
                            return Err(Failed::Error(error, Outcome::Transient));
                        }
                        let result = service.call(request).await;
                        let outcome = classify.classify(&result);
                        match result {
                            Ok(response) if outcome.is_success() => Ok(response),
                            Ok(response) => Err(Failed::Response(response, outcome)),
                            // An error judged a success is still an error;
                            // it is not retried.
                            Err(error) if outcome.is_success() => {
                                Err(Failed::Error(error, Outcome::Permanent))
                            }
                            Err(error) => Err(Failed::Error(error, outcome)),
                        }
                    }
                })
                .idempotency(idempotency)
                .classify(from_error(
                    |failed: &Failed<S::Response, S::Error>| match failed {
                        Failed::Response(_, outcome) | Failed::Error(_, outcome) => *outcome,
                    },
                ))
                .await;
            match result {
                Ok(response) => Ok(response),
                Err(error) => {
                    let RetryError {
                        reason,
                        attempts,
                        last_outcome,
                        last_error,
                    } = error;
                    let last_error = match last_error {
                        Some(Failed::Response(response, _)) => return Ok(response),
                        Some(Failed::Error(error, _)) => Some(error),
                        None => None,
                    };
                    Err(RetryError {
                        reason,
                        attempts,
                        last_outcome,
                        last_error,
                    })
                }
            }
        })
    }
}
