//! News items for the front page and the Atom feed, with a title and text
//! per language.

use sqlx::Row;

use super::{Db, DbError, Tx, now};

/// One language's title and text of an item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NewsText {
    pub language: String,
    pub title: String,
    pub body: String,
}

impl NewsText {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<NewsText, DbError> {
        Ok(NewsText {
            language: row.try_get("language")?,
            title: row.try_get("title")?,
            body: row.try_get("body")?,
        })
    }
}

/// A news item with every language it was written in.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewsItem {
    pub id: i64,
    pub published_at: i64,
    pub updated_at: i64,
    pub texts: Vec<NewsText>,
}

impl NewsItem {
    /// The text in `language`, else the English one.
    pub fn text_in(&self, language: &str) -> Option<&NewsText> {
        self.texts
            .iter()
            .find(|t| t.language == language)
            .or_else(|| self.texts.iter().find(|t| t.language == "en"))
    }
}

/// The newest items first, at most `limit`.
pub async fn latest(db: &Db, limit: i64) -> Result<Vec<NewsItem>, DbError> {
    let rows = sqlx::query(
        "SELECT id, published_at, updated_at FROM news
         ORDER BY published_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(NewsItem {
            id: row.try_get("id")?,
            published_at: row.try_get("published_at")?,
            updated_at: row.try_get("updated_at")?,
            texts: Vec::new(),
        });
    }
    let texts = sqlx::query(
        "SELECT t.news_id, t.language, t.title, t.body FROM news_texts t
         JOIN (SELECT id FROM news ORDER BY published_at DESC, id DESC LIMIT $1) n
           ON n.id = t.news_id
         ORDER BY t.news_id, t.language",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    for row in &texts {
        let id: i64 = row.try_get("news_id")?;
        if let Some(item) = items.iter_mut().find(|i| i.id == id) {
            item.texts.push(NewsText::from_row(row)?);
        }
    }
    Ok(items)
}

pub async fn get(db: &Db, id: i64) -> Result<Option<NewsItem>, DbError> {
    let Some(row) = sqlx::query("SELECT id, published_at, updated_at FROM news WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT language, title, body FROM news_texts WHERE news_id = $1 ORDER BY language",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    let mut texts = Vec::with_capacity(rows.len());
    for text in &rows {
        texts.push(NewsText::from_row(text)?);
    }
    Ok(Some(NewsItem {
        id: row.try_get("id")?,
        published_at: row.try_get("published_at")?,
        updated_at: row.try_get("updated_at")?,
        texts,
    }))
}

/// A new item; its texts replace none. Returns its id.
pub async fn create(
    tx: &mut Tx,
    published_at: i64,
    created_by: Option<i64>,
    texts: &[NewsText],
) -> Result<i64, DbError> {
    let ts = now();
    let row = sqlx::query(
        "INSERT INTO news (published_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(published_at)
    .bind(created_by)
    .bind(ts)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    insert_texts(tx, id, texts).await?;
    Ok(id)
}

/// Replaces an item's date and texts; false when there is no such item.
pub async fn update(
    tx: &mut Tx,
    id: i64,
    published_at: i64,
    texts: &[NewsText],
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE news SET published_at = $1, updated_at = $2 WHERE id = $3")
        .bind(published_at)
        .bind(now())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM news_texts WHERE news_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    insert_texts(tx, id, texts).await?;
    Ok(true)
}

/// Deletes an item and its texts; false when there is no such item.
pub async fn delete(tx: &mut Tx, id: i64) -> Result<bool, DbError> {
    sqlx::query("DELETE FROM news_texts WHERE news_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let done = sqlx::query("DELETE FROM news WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

async fn insert_texts(tx: &mut Tx, id: i64, texts: &[NewsText]) -> Result<(), DbError> {
    for text in texts {
        sqlx::query(
            "INSERT INTO news_texts (news_id, language, title, body) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&text.language)
        .bind(&text.title)
        .bind(&text.body)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
