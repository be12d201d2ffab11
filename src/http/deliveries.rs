//! Webhook deliveries: a build's list, and sending one again.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::{ApiError, ErrorCode, RouteErrors};
use super::{method_not_allowed, parse_id, AppState};
use crate::domain::{Delivery, DeliveryState, Timestamp, WebhookEvent};

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "get",
        path: "/api/v1/builds/{id}/deliveries",
        token: true,
        body: false,
        submits: false,
        errors: &[ErrorCode::InvalidId, ErrorCode::BuildNotFound],
    },
    RouteErrors {
        method: "post",
        path: "/api/v1/deliveries/{id}/redeliver",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::DeliveryNotFound,
            ErrorCode::DeliveryPending,
        ],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds/{id}/deliveries")
            .route(web::get().to(list_deliveries))
            .default_service(method_not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/deliveries/{id}/redeliver")
            .route(web::post().to(redeliver))
            .default_service(method_not_allowed("POST")),
    );
}

/// A delivery on the wire: its record, without the body or the secret's variable.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView<'a> {
    id: i64,
    delivery_id: &'a str,
    build_id: i64,
    event: WebhookEvent,
    url: &'a str,
    state: DeliveryState,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<&'a str>,
    next_attempt_at: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    redelivery_of: Option<i64>,
}

impl<'a> From<&'a Delivery> for DeliveryView<'a> {
    fn from(delivery: &'a Delivery) -> Self {
        DeliveryView {
            id: delivery.id,
            delivery_id: &delivery.delivery_id,
            build_id: delivery.build_id,
            event: delivery.event,
            url: &delivery.url,
            state: delivery.state,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: delivery.last_error.as_deref(),
            next_attempt_at: delivery.next_attempt_at.map(Timestamp::to_rfc3339),
            created_at: delivery.created_at.to_rfc3339(),
            finished_at: delivery.finished_at.map(Timestamp::to_rfc3339),
            redelivery_of: delivery.redelivery_of,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList<'a> {
    deliveries: Vec<DeliveryView<'a>>,
}

/// 200 with the build's deliveries, oldest first; 404 for an unknown build.
#[utoipa::path(get, path = "/api/v1/builds/{id}/deliveries", tag = "webhooks", params(("id" = i64, Path)),
    responses(
        (status = 200, body = DeliveryList),
    ))]
async fn list_deliveries(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    state.builds.get(id).await?;
    let deliveries = state.builds.webhooks().deliveries(id).await?;
    Ok(HttpResponse::Ok().json(DeliveryList {
        deliveries: deliveries.iter().map(DeliveryView::from).collect(),
    }))
}

/// 202 with the new delivery that sends an ended one again.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/redeliver", tag = "webhooks", params(("id" = i64, Path)),
    responses(
        (status = 202, body = DeliveryView),
    ))]
async fn redeliver(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let delivery = state.builds.webhooks().redeliver(parse_id(&id)?).await?;
    Ok(HttpResponse::Accepted().json(DeliveryView::from(&delivery)))
}
