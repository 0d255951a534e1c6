//! The shared database helper, used from a package other than its own.

use payguard_test_support::TestDb;

async fn database_exists(pool: &sqlx::PgPool, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_created_concurrently_are_isolated_and_dropped() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name(), b.name());

    sqlx::query("CREATE TABLE marker (v int)")
        .execute(a.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO marker VALUES (1)")
        .execute(a.pool())
        .await
        .unwrap();

    // The table exists in `a` only.
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('marker')::text")
        .fetch_one(b.pool())
        .await
        .unwrap();
    assert_eq!(in_b, None);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM marker")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);

    // Each pool really is on its own database.
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(b.pool())
        .await
        .unwrap();
    assert_eq!(current, b.name());

    let name_a = a.name().to_owned();
    drop(a);
    assert!(
        !database_exists(b.pool(), &name_a).await,
        "dropping TestDb drops its database"
    );
    assert!(database_exists(b.pool(), b.name()).await);
}

#[tokio::test]
async fn url_reaches_the_same_database() {
    let db = TestDb::new().await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, db.name());
    pool.close().await;
}

#[tokio::test]
#[should_panic(expected = "point the tests at one with DATABASE_URL=")]
async fn no_server_fails_with_instructions() {
    // Nothing listens on port 1.
    let _db = TestDb::on_server("postgres://postgres:hunter2@127.0.0.1:1/postgres", 1).await;
}
