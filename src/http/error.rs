//! The one place where errors become HTTP: status codes, the stable error
//! codes of the contract, and the `{"error":{"code","message"}}` body; for
//! the dashboard (`UiError`), the same statuses as an HTML page or a
//! redirect to its login. No stack traces, no secrets, no echo of a
//! signature.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::ingest::IngestError;
use crate::push::PushError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("storage is unavailable, retry later")]
    Unavailable(#[from] StoreError),
}

/// Seconds a sender or client should wait after a 503.
const RETRY_AFTER_SECS: &str = "5";

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Ingest(e) => e.code(),
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Ingest(e) => match e {
                IngestError::UnknownSource => StatusCode::NOT_FOUND,
                IngestError::ForbiddenAddress => StatusCode::FORBIDDEN,
                IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                IngestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
                IngestError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                IngestError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IngestError::Verify(_) => StatusCode::UNAUTHORIZED,
                IngestError::InvalidBody(_) => StatusCode::BAD_REQUEST,
                IngestError::SchemaViolation(_) => StatusCode::UNPROCESSABLE_ENTITY,
                IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut error = json!({ "code": self.code(), "message": self.public_message() });
        if let ApiError::Ingest(IngestError::SchemaViolation(violations)) = self {
            error["paths"] = json!(violations.iter().map(|v| &v.path).collect::<Vec<_>>());
            error["violations"] = json!(violations);
        }
        let mut response = HttpResponse::build(status);
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                if let ApiError::Ingest(IngestError::RateLimited { retry_after_secs }) = self {
                    response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            StatusCode::UNAUTHORIZED if matches!(self, ApiError::Unauthorized) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(json!({ "error": error }))
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> ApiError {
        match e {
            PushError::Invalid(m) => ApiError::BadRequest(m),
            PushError::NotFound => ApiError::NotFound("no such subscription".into()),
            PushError::Conflict(m) => ApiError::Conflict(m),
            PushError::Store(e) => ApiError::Unavailable(e),
        }
    }
}

impl ApiError {
    /// Storage details stay in the logs; callers only learn to retry.
    fn public_message(&self) -> String {
        match self {
            ApiError::Ingest(IngestError::Unavailable(e)) | ApiError::Unavailable(e) => {
                tracing::error!(error = %e, "storage unavailable");
                "storage is unavailable, retry later".into()
            }
            other => other.to_string(),
        }
    }
}

/// The dashboard's errors: the API's, plus its session and CSRF checks.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No valid session on a page: off to the login form.
    #[error("log in first")]
    LoginRequired,
    /// No valid session on an action (a form POST).
    #[error("your session has ended; log in again")]
    Unauthorized,
    #[error("that token is not one of the configured [api] tokens")]
    BadLogin,
    #[error(
        "the form is stale or did not come from this dashboard; reload the page and try again"
    )]
    Csrf,
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::Api(e) => e.status_code(),
            UiError::LoginRequired => StatusCode::SEE_OTHER,
            UiError::Unauthorized | UiError::BadLogin => StatusCode::UNAUTHORIZED,
            UiError::Csrf => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        use super::ui;
        let status = self.status_code();
        let message = match self {
            UiError::Api(e) => e.public_message(),
            other => other.to_string(),
        };
        match self {
            UiError::LoginRequired => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/ui/login"))
                .finish(),
            UiError::BadLogin => {
                ui::respond(HttpResponse::build(status), ui::login_form(Some(&message)))
            }
            _ => ui::respond(
                HttpResponse::build(status),
                ui::error_page(status.as_u16(), &message),
            ),
        }
    }
}
