//! [`CircuitBreakerLayer`]: the breaker as `tower` middleware.

use crate::breaker::{CircuitBreaker, Token};
use crate::call::BreakerError;
use payguard_core::Classify;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// Guards the inner service with a breaker: a rejected call fails at once
/// with [`BreakerError::Rejected`] without reaching the service; an admitted
/// one is recorded with `classify` when it completes. Put it inside a retry
/// layer, so that each attempt is seen by the breaker.
///
/// ```
/// use payguard_breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use payguard_core::Outcome;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder().name("flutterwave").build()?;
/// let mut service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(breaker, |r: &Result<u16, std::io::Error>| {
///         if matches!(r, Ok(s) if *s < 500) { Outcome::Success } else { Outcome::Transient }
///     }))
///     .service_fn(|_request: ()| async { Ok::<u16, std::io::Error>(200) });
/// assert_eq!(service.ready().await?.call(()).await?, 200);
/// # Ok(())
/// # }
/// ```
pub struct CircuitBreakerLayer<C> {
    breaker: CircuitBreaker,
    classify: Arc<C>,
}

impl<C> CircuitBreakerLayer<C> {
    /// Guards services with `breaker`, judging results with `classify`.
    pub fn new(breaker: CircuitBreaker, classify: C) -> Self {
        Self {
            breaker,
            classify: Arc::new(classify),
        }
    }
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classify: Arc::clone(&self.classify),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`CircuitBreakerLayer`].
pub struct CircuitBreakerService<S, C> {
    inner: S,
    layer: CircuitBreakerLayer<C>,
}

impl<S: Clone, C> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (inner, token) = match self.layer.breaker.acquire_token() {
            Ok(token) => (Some(self.inner.call(request)), Ok(token)),
            Err(rejected) => (None, Err(rejected)),
        };
        ResponseFuture {
            inner,
            guard: Guard {
                breaker: self.layer.breaker.clone(),
                token: Some(token),
            },
            classify: Arc::clone(&self.layer.classify),
        }
    }
}

/// Records, or on drop cancels, an admitted call.
struct Guard {
    breaker: CircuitBreaker,
    token: Option<Result<Token, crate::Rejected>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(Ok(token)) = self.token.take() {
            self.breaker.cancel_token(token);
        }
    }
}

pin_project! {
    /// The future of [`CircuitBreakerService`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: Option<F>,
        guard: Guard,
        classify: Arc<C>,
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return match this.guard.token.take() {
                Some(Err(rejected)) => Poll::Ready(Err(BreakerError::Rejected(rejected))),
                // Only a rejected call has no inner future.
                _ => Poll::Pending,
            };
        };
        let result = ready!(inner.poll(cx));
        if let Some(Ok(token)) = this.guard.token.take() {
            this.guard
                .breaker
                .record_token(token, this.classify.classify(&result));
        }
        Poll::Ready(result.map_err(BreakerError::Inner))
    }
}
