//! The web page: one HTML page with its stylesheet and script, compiled into the
//! binary so that the single binary is still all a user needs.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::method_not_allowed;

/// The page loads nothing but its own files and talks only to this server; inline
/// scripts and styles are refused too, so injected markup cannot run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../assets/index.html"),
};

/// Everything under `/assets/`, by file name.
const ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/style.css"),
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(index))
            .default_service(method_not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/assets/{name}")
            .route(web::get().to(asset))
            .default_service(method_not_allowed("GET, HEAD")),
    );
}

async fn index() -> HttpResponse {
    serve(&INDEX)
}

async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let found = ASSETS.iter().find(|asset| asset.name == name.as_str());
    found.map(serve).ok_or(ApiError::NoRoute)
}

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Revalidated on every load, so a new binary's page is never mixed with an
        // old cached script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use actix_web::{http::StatusCode, test, App};

    use super::*;

    #[actix_web::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_a_policy() {
        let app = test::init_service(App::new().configure(routes)).await;
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/style.css", "text/css; charset=utf-8"),
        ] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                content_type,
                "{path}"
            );
            let policy = headers.get(header::CONTENT_SECURITY_POLICY).unwrap();
            assert!(
                policy.to_str().unwrap().starts_with("default-src 'self'"),
                "{path}"
            );
        }
    }

    #[actix_web::test]
    async fn an_unknown_asset_is_a_json_404() {
        let app = test::init_service(App::new().configure(routes)).await;
        let request = test::TestRequest::get()
            .uri("/assets/secret.txt")
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["error"]["code"], "not_found");
    }
}
