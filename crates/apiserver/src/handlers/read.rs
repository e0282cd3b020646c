//! GET and LIST.

use http::{Response, StatusCode};

use super::output::{list_response, object_response};
use super::{list_options, Ctx};
use crate::body::Body;
use crate::status::ApiError;

pub async fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let obj = ctx
        .served
        .store
        .get(&ctx.info.namespace, &ctx.info.name)
        .await?;
    object_response(ctx, StatusCode::OK, &obj)
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let opts = list_options(ctx)?;
    let list = ctx.served.store.list(&ctx.info.namespace, &opts).await?;
    list_response(ctx, list)
}
