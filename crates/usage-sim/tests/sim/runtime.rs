//! The servers run on any Tokio runtime flavour and inside an actix system.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use usage_sim::{CBK_TOKEN, DO_TOKEN, KIBANA_API_KEY, Simulators, start_all, start_chatbotkit};

use crate::common::{client, data, send, spec};

async fn exercise(sims: &Simulators) {
    let c = client();
    let (s, _, _) = send(
        c.get(format!("{}/v2/gen-ai/agents", sims.digitalocean.base_url))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(
        c.get(format!("{}/api/agent_builder/agents", sims.kibana.base_url))
            .header("authorization", format!("ApiKey {KIBANA_API_KEY}")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(
        c.get(format!("{}/v1/bot/list", sims.chatbotkit.base_url))
            .bearer_auth(CBK_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
}

async fn round_trip() {
    let sims = start_all(&spec()).await.unwrap();
    for h in [&sims.digitalocean, &sims.kibana, &sims.chatbotkit] {
        assert!(h.base_url.starts_with("http://127.0.0.1:"));
        assert!(!h.base_url.ends_with('/'));
    }
    exercise(&sims).await;
    let url = format!("{}/v1/bot/list", sims.chatbotkit.base_url);
    sims.stop().await;
    // Stopped means stopped.
    assert!(
        client()
            .get(url)
            .bearer_auth(CBK_TOKEN)
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn runs_on_a_current_thread_runtime() {
    round_trip().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_a_multi_thread_runtime() {
    round_trip().await;
}

#[actix_web::test]
async fn runs_inside_an_actix_system() {
    round_trip().await;
}

#[tokio::test]
async fn binds_the_given_address() {
    let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free.port()));
    let sim = start_chatbotkit(data(), Some(addr)).await.unwrap();
    assert_eq!(sim.base_url, format!("http://{addr}"));
    assert_eq!(sim.addr, addr);
    // A second simulator cannot take the same port.
    assert!(start_chatbotkit(data(), Some(addr)).await.is_err());
    sim.stop().await;
}
