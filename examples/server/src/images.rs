//! Item photos: the seller uploads them (type and size checked), they are
//! stored on disk under their SHA-256, and served with long-lived caching
//! headers (a name never changes content).

use std::path::{Path as FilePath, PathBuf};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use neighborbid_axum::extract::Path;
use neighborbid_axum::ApiError;
use neighborbid_core::{Store, UserId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::accounts::{database, hex, now};
use crate::community::{auction, signed_in};
use crate::Site;

/// Most photos per auction.
pub(crate) const MAX_IMAGES: i64 = 8;

/// Where photos live and how big they may be.
#[derive(Clone, Debug)]
pub(crate) struct ImageStore {
    /// The directory (created if missing).
    pub(crate) dir: PathBuf,
    /// Largest upload, in bytes.
    pub(crate) max_bytes: usize,
}

/// Whether bytes start like an image of some type.
type Sniff = fn(&[u8]) -> bool;

/// The image types accepted: MIME type, file extension, and whether the
/// bytes start like one.
const TYPES: [(&str, &str, Sniff); 4] = [
    ("image/png", "png", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", "jpg", |b| b.starts_with(b"\xff\xd8\xff")),
    ("image/gif", "gif", |b| {
        b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")
    }),
    ("image/webp", "webp", |b| {
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP"
    }),
];

/// An uploaded photo.
#[derive(Debug, Serialize)]
pub(crate) struct Image {
    name: String,
    url: String,
    content_type: String,
    bytes: i64,
}

pub(crate) async fn create_table(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS images (
            auction_id BIGINT NOT NULL,
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (auction_id, name))",
    )
    .execute(pool)
    .await?;
    // Photos per auction, counted under the row's lock so concurrent
    // uploads cannot pass the limit; the CHECK holds it whatever the code.
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS image_counts (
            auction_id BIGINT PRIMARY KEY,
            images BIGINT NOT NULL CHECK (images BETWEEN 0 AND {MAX_IMAGES}))"
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// Adds a photo's row unless the auction has [`MAX_IMAGES`] already, in
/// one transaction: the count goes up only where it is below the limit, and
/// the row's lock makes a concurrent upload wait and see the new count.
/// `Ok(false)` when the auction is full; the same photo again is no error
/// and takes no place.
async fn add_image(pool: &AnyPool, row: &ImageRow<'_>) -> Result<bool, ApiError> {
    let mut tx = pool.begin().await.map_err(database)?;
    // A database from before this table counts the photos it has.
    sqlx::query(
        "INSERT INTO image_counts (auction_id, images) \
         SELECT $1, COUNT(*) FROM images WHERE auction_id = $1 \
         ON CONFLICT (auction_id) DO NOTHING",
    )
    .bind(row.auction_id)
    .execute(&mut *tx)
    .await
    .map_err(database)?;
    let counted = sqlx::query(
        "UPDATE image_counts SET images = images + 1 WHERE auction_id = $1 AND images < $2",
    )
    .bind(row.auction_id)
    .bind(MAX_IMAGES)
    .execute(&mut *tx)
    .await
    .map_err(database)?;
    if counted.rows_affected() == 0 {
        return Ok(false);
    }
    let inserted = sqlx::query(
        "INSERT INTO images (auction_id, name, content_type, bytes, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (auction_id, name) DO NOTHING",
    )
    .bind(row.auction_id)
    .bind(row.name)
    .bind(row.content_type)
    .bind(row.bytes)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(database)?;
    if inserted.rows_affected() == 1 {
        tx.commit().await.map_err(database)?;
    }
    // Otherwise the photo was there already: rolling back keeps its place.
    Ok(true)
}

/// A photo's row in `images`.
struct ImageRow<'a> {
    auction_id: i64,
    name: &'a str,
    content_type: &'a str,
    bytes: i64,
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_image",
        "upload a PNG, JPEG, GIF or WebP image, with its Content-Type",
    )
}

async fn list(pool: &AnyPool, auction_id: i64) -> Result<Vec<Image>, ApiError> {
    let rows = sqlx::query(
        "SELECT name, content_type, bytes FROM images WHERE auction_id = $1 \
         ORDER BY created_at, name",
    )
    .bind(auction_id)
    .fetch_all(pool)
    .await
    .map_err(database)?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("name")?;
            Ok(Image {
                url: format!("/images/{name}"),
                name,
                content_type: row.try_get("content_type")?,
                bytes: row.try_get("bytes")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(database)
}

/// `GET /site/auctions/{id}/images`.
pub(crate) async fn images<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    auction(&site, id).await?;
    Ok(Json(list(site.accounts.pool(), id).await?).into_response())
}

/// `POST /site/auctions/{id}/images`: the raw image is the body.
pub(crate) async fn upload<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let account = signed_in(&site, &parts).await?;
    let auction = auction(&site, id).await?;
    if auction.listing.seller != UserId(account.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_seller",
            "only the seller adds photos",
        ));
    }
    let declared = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let (content_type, extension, looks_like) = TYPES
        .into_iter()
        .find(|(mime, _, _)| *mime == declared)
        .ok_or_else(unsupported)?;
    let store = &site.images;
    let bytes = to_bytes(body, store.max_bytes).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
            format!("an image is at most {} bytes", store.max_bytes),
        )
    })?;
    if !looks_like(&bytes) {
        return Err(unsupported());
    }
    let name = format!("{}.{extension}", hex(&Sha256::digest(&bytes)));
    // The file first: a row never names a file that is not there (a file
    // without a row, from a full auction, is harmless and may serve another).
    write_once(&store.dir, &name, &bytes)
        .await
        .map_err(|error| {
            tracing::error!(%error, "storing an image");
            ApiError::internal()
        })?;
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let row = ImageRow {
        auction_id: id,
        name: &name,
        content_type,
        bytes: size,
    };
    if !add_image(site.accounts.pool(), &row).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_images",
            format!("an auction has at most {MAX_IMAGES} photos"),
        ));
    }
    let image = Image {
        url: format!("/images/{name}"),
        name,
        content_type: content_type.to_owned(),
        bytes: size,
    };
    Ok((StatusCode::CREATED, Json(image)).into_response())
}

/// Writes `name` unless it exists; through a temporary file, so a reader
/// never sees half an image.
async fn write_once(dir: &FilePath, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    if tokio::fs::try_exists(&path).await? {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir).await?;
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, &path).await
}

/// `GET /images/{name}`: immutable, so cached for a year.
pub(crate) async fn serve<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (hash, extension) = name.split_once('.').ok_or_else(ApiError::not_found)?;
    let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let (content_type, _, _) = TYPES
        .into_iter()
        .find(|(_, ext, _)| *ext == extension)
        .filter(|_| valid_hash)
        .ok_or_else(ApiError::not_found)?;
    let etag = format!("\"{hash}\"");
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (
            ETAG,
            HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?,
        ),
        (
            axum::http::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let unchanged = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    match tokio::fs::read(site.images.dir.join(&name)).await {
        Ok(_) if unchanged => Ok((StatusCode::NOT_MODIFIED, headers).into_response()),
        Ok(bytes) => Ok((headers, Body::from(bytes)).into_response()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found()),
        Err(error) => {
            tracing::error!(%error, "reading an image");
            Err(ApiError::internal())
        }
    }
}
