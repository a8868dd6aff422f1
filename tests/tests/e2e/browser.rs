//! A real browser on the corpus: Chromium (Debian's, installed by `cargo xtask
//! setup`) driven over WebDriver by chromedriver, against `karpa serve`'s router
//! on a real socket and a seeded PostgreSQL. Screenshots go to
//! target/test-output/browser/.

use fantoccini::{Client, ClientBuilder, Locator};
use karpa_bot::server::{router, AppState};
use karpa_tests::corpus_seed::seed;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by `cargo xtask setup` (Debian's chromium-driver)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Driver { child, port };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not listen on {port} within 10 s");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = karpa_tests::workspace_root().join("target/test-output/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// The current URL once `arrived` holds for it: a submit or a click returns
/// before the browser has loaded the next page (seen under load).
async fn url_when(c: &Client, arrived: impl Fn(&url::Url) -> bool) -> url::Url {
    for _ in 0..100 {
        let url = c.current_url().await.unwrap();
        if arrived(&url) {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser did not arrive: still at {}", c.current_url().await.unwrap());
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

#[tokio::test]
async fn chromium_browses_searches_and_runs_no_miner_script() {
    let pool = karpa_tests::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let s = seed(&pool, dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AppState::new(pool.clone(), vec![b"s".to_vec()], 1, 1 << 20));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let driver = Driver::start().await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--force-device-scale-factor=1"]
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");

    // Home: the king, the lineage chart, the leaderboard.
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Home · Karpa corpus");
    let king = text(&c, ".card.king").await;
    assert!(king.contains("recipe-v0.1.1") && king.contains("crowned by octo"), "{king}");
    assert!(c.find(Locator::Css(".card.chart svg circle")).await.is_ok(), "the lineage chart draws its kings");
    let board = text(&c, "table").await;
    assert!(board.contains("octo"), "{board}");
    shot(&c, "home.png").await;

    // A search from the form: one hit, the right one.
    c.goto(&format!("{base}/submissions")).await.unwrap();
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("q", "tied embeddings").await.unwrap();
    form.submit().await.unwrap();
    let url = url_when(&c, |u| u.query().is_some()).await;
    assert!(url.query().unwrap_or("").contains("q=tied+embeddings"), "{url}");
    let count = text(&c, ".count").await;
    assert!(count.starts_with("1 submission matching"), "{count}");
    let rows = text(&c, "table.submissions tbody").await;
    assert!(rows.contains("Tie the embeddings") && !rows.contains("Twice the steps"), "{rows}");
    shot(&c, "search.png").await;

    // Into the submission from the results.
    c.find(Locator::LinkText("Tie the embeddings")).await.unwrap().click().await.unwrap();
    let url = url_when(&c, |u| u.path() != "/submissions").await;
    assert!(url.path().ends_with(s.failure.as_str()), "{url}");
    assert!(text(&c, "h1").await.contains("Tie the embeddings"));
    let added = text(&c, "pre.diff .add").await;
    assert_eq!(added, "+tie_embeddings = true");
    assert!(text(&c, "pre.cite").await.starts_with(&format!("@misc{{karpa-{}", s.failure)));
    shot(&c, "submission.png").await;

    // The hostile rationale: shown as text, and nothing of it ran.
    c.goto(&format!("{base}/submissions/{}", s.hostile)).await.unwrap();
    assert!(c.get_alert_text().await.is_err(), "no alert opened: no miner script ran");
    let scripts = c.find_all(Locator::Css("script, img, [onmouseover], a[href^='javascript']")).await.unwrap();
    assert!(scripts.is_empty(), "no script, image, handler or javascript: link reached the page");
    let heading = text(&c, ".rationale h1").await;
    assert_eq!(heading, "Sneaky title");
    shot(&c, "hostile.png").await;

    // The published models, and one model's card; the chart rings the release that has one.
    c.goto(&format!("{base}/models")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Models · Karpa corpus");
    let row = text(&c, "table.models tbody").await;
    assert!(row.contains("karpa-tiny-v0.1.1") && row.contains("recipe-v0.1.1") && row.contains("2.3381"), "{row}");
    let says = ["the crowned bundle's weights", "karpa-tiny-v0.1.1-reference", "re-trained by karpa reference"];
    assert!(says.iter().all(|s| row.contains(s)), "whose weights each model holds: {row}");
    let link = c.find(Locator::LinkText("download")).await.unwrap().attr("href").await.unwrap();
    assert_eq!(link.as_deref(), Some("https://models.example/karpa-tiny-v0.1.1.tar"));
    c.find(Locator::LinkText("karpa-tiny-v0.1.1")).await.unwrap().click().await.unwrap();
    url_when(&c, |u| u.path().starts_with("/models/")).await;
    assert_eq!(text(&c, ".rationale h1").await, "karpa-tiny-v0.1.1");
    let card = text(&c, ".rationale").await;
    assert!(card.contains("Lineage") && card.contains("karpa model verify") && !card.contains("model-index"), "{card}");
    shot(&c, "model.png").await;
    c.goto(&format!("{base}/")).await.unwrap();
    let chart = c.find(Locator::Css(".card.chart svg")).await.unwrap().html(false).await.unwrap();
    assert!(chart.contains("published as a model"), "the lineage chart marks the king with a model");

    // A bad search is a friendly page, not a crash.
    c.goto(&format!("{base}/submissions?page=99999999")).await.unwrap();
    assert!(text(&c, "section.error").await.contains("deepest a page may go"));
    c.close().await.unwrap();
    drop(driver);
}
