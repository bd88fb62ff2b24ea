//! Image scans and the advisory database on PostgreSQL.

use async_trait::async_trait;
use berth_core::{Digest, RepoName};

use super::{PgMetaStore, backend};
use crate::Result;
use crate::scans::{
    ADD_ADVISORY_PACKAGE_SQL, ADVISORIES_PAGE_SQL, ADVISORY_MODIFIED_SQL, AdvisoryRecord,
    DELETE_ADVISORY_PACKAGES_SQL, DELETE_ADVISORY_SQL, ECOSYSTEM_COUNTS_SQL, IMAGE_LOCATIONS_SQL,
    ImageScan, ImportCounts, ImportStep, KEYS_PER_QUERY, LAST_IMPORT_SQL, RECORD_IMPORT_SQL,
    SAVE_SCAN_SQL, SCAN_COLUMNS, STATUS_SQL, ScanRow, ScanStore, UPSERT_ADVISORY_SQL, VulnDbStatus,
    advisories_for_sql, locations, scan,
};

#[async_trait]
impl ScanStore for PgMetaStore {
    async fn save_scan(&self, s: &ImageScan) -> Result<()> {
        sqlx::query(SAVE_SCAN_SQL)
            .bind(s.digest.to_string())
            .bind(s.scanned_at)
            .bind(s.matched_at)
            .bind(&s.inventory)
            .bind(&s.findings)
            .bind(&s.worst)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn image_scan(&self, digest: &Digest) -> Result<Option<ImageScan>> {
        let sql = format!("SELECT {SCAN_COLUMNS} FROM image_scans WHERE digest = $1");
        let row: Option<ScanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(scan).transpose()
    }

    async fn image_scans(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<ImageScan>> {
        let sql = format!(
            "SELECT {SCAN_COLUMNS} FROM image_scans WHERE digest > $1 ORDER BY digest LIMIT $2"
        );
        let rows: Vec<ScanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|d| d.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter().map(scan).collect()
    }

    async fn import_advisories(&self, batch: &[AdvisoryRecord]) -> Result<ImportCounts> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut counts = ImportCounts::default();
        for record in batch {
            let stored: Option<String> = sqlx::query_scalar(ADVISORY_MODIFIED_SQL)
                .bind(&record.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            let step = ImportStep::of(stored.as_deref(), record);
            step.count(&mut counts);
            if matches!(step, ImportStep::Skip | ImportStep::Unchanged) {
                continue;
            }
            sqlx::query(DELETE_ADVISORY_PACKAGES_SQL)
                .bind(&record.id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if step == ImportStep::Remove {
                sqlx::query(DELETE_ADVISORY_SQL)
                    .bind(&record.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                continue;
            }
            sqlx::query(UPSERT_ADVISORY_SQL)
                .bind(&record.id)
                .bind(&record.modified)
                .bind(&record.body)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            for (ecosystem, name) in &record.packages {
                sqlx::query(ADD_ADVISORY_PACKAGE_SQL)
                    .bind(ecosystem)
                    .bind(name)
                    .bind(&record.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(counts)
    }

    async fn record_vulndb_import(
        &self,
        source: &str,
        counts: ImportCounts,
        at: i64,
    ) -> Result<()> {
        sqlx::query(RECORD_IMPORT_SQL)
            .bind(source)
            .bind(at)
            .bind(counts.added as i64)
            .bind(counts.updated as i64)
            .bind(counts.removed as i64)
            .bind(counts.unchanged as i64)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn advisories_for(&self, keys: &[(String, String)]) -> Result<Vec<String>> {
        let mut bodies: Vec<(String, String)> = Vec::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let sql = advisories_for_sql(chunk.len());
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
            for (ecosystem, name) in chunk {
                query = query.bind(ecosystem).bind(name);
            }
            bodies.extend(query.fetch_all(&self.pool).await.map_err(backend)?);
        }
        bodies.sort();
        bodies.dedup_by(|a, b| a.0 == b.0);
        Ok(bodies.into_iter().map(|(_, body)| body).collect())
    }

    async fn advisories(&self, after: Option<&str>, limit: u32) -> Result<Vec<(String, String)>> {
        sqlx::query_as(ADVISORIES_PAGE_SQL)
            .bind(after.unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn vulndb_status(&self) -> Result<VulnDbStatus> {
        let (advisories, newest_modified): (i64, Option<String>) = sqlx::query_as(STATUS_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        let ecosystems: Vec<(String, i64)> = sqlx::query_as(ECOSYSTEM_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let last: Option<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(LAST_IMPORT_SQL)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(crate::scans::status(
            advisories,
            newest_modified,
            ecosystems,
            last,
        ))
    }

    async fn image_locations(&self, digest: &Digest) -> Result<Vec<(RepoName, Vec<String>)>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(IMAGE_LOCATIONS_SQL)
            .bind(digest.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        locations(rows)
    }
}
