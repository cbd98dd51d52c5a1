//! Fault injection and request counters, on every simulator.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use usage_sim::{
    CBK_TOKEN, DO_TOKEN, DoOptions, KIBANA_API_KEY, SimHandle, start_all, start_digitalocean,
    start_kibana,
};

use crate::common::{client, data, header, send, spec};

fn do_agents(sim: &SimHandle) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}/v2/gen-ai/agents", sim.base_url))
        .bearer_auth(DO_TOKEN)
}

fn kibana_agents(sim: &SimHandle) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}/api/agent_builder/agents", sim.base_url))
        .header("authorization", format!("ApiKey {KIBANA_API_KEY}"))
}

#[tokio::test]
async fn latency_delays_answers() {
    let sim = start_digitalocean(data(), DoOptions::default(), None)
        .await
        .unwrap();
    sim.faults()
        .set_latency(Duration::from_millis(300), Duration::from_millis(50));
    let t = Instant::now();
    let (s, _, _) = send(do_agents(&sim)).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.faults().clear();
    let t = Instant::now();
    send(do_agents(&sim)).await;
    assert!(t.elapsed() < Duration::from_millis(300));
    sim.stop().await;
}

#[tokio::test]
async fn error_rate_answers_500_with_each_vendor_body() {
    let sims = start_all(&spec()).await.unwrap();
    for sim in [&sims.digitalocean, &sims.kibana, &sims.chatbotkit] {
        sim.faults().set_error_rate(1.0);
    }
    let c = client();
    let (s, h, v) = send(do_agents(&sims.digitalocean)).await;
    assert_eq!(s, 500);
    assert_eq!(v["id"], "server_error");
    assert!(v["request_id"].is_string());
    assert!(header(&h, "ratelimit-limit").is_some());
    let (s, _, v) = send(kibana_agents(&sims.kibana)).await;
    assert_eq!(s, 500);
    assert_eq!(
        v,
        json!({"statusCode": 500, "error": "Internal Server Error", "message": "Internal Server Error"})
    );
    let (s, _, v) = send(
        c.get(format!("{}/v1/bot/list", sims.chatbotkit.base_url))
            .bearer_auth(CBK_TOKEN),
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(v["code"], "INTERNAL_SERVER_ERROR");
    sims.digitalocean.faults().set_error_rate(0.0);
    let (s, _, _) = send(do_agents(&sims.digitalocean)).await;
    assert_eq!(s, 200);
    // A share in between fails some, not all.
    sims.digitalocean.faults().set_error_rate(0.5);
    let mut failed = 0;
    for _ in 0..40 {
        if send(do_agents(&sims.digitalocean)).await.0 == 500 {
            failed += 1;
        }
    }
    assert!((5..=35).contains(&failed), "{failed}");
    sims.stop().await;
}

#[tokio::test]
async fn force_next_answers_n_times_then_recovers() {
    let sim = start_digitalocean(data(), DoOptions::default(), None)
        .await
        .unwrap();
    sim.faults().force_next(2, 503);
    assert_eq!(send(do_agents(&sim)).await.0, 503);
    let (s, _, v) = send(do_agents(&sim)).await;
    assert_eq!(s, 503);
    assert_eq!(v["id"], "service_unavailable");
    assert_eq!(send(do_agents(&sim)).await.0, 200);
    sim.faults().force_next(1, 429);
    let (s, h, v) = send(do_agents(&sim)).await;
    assert_eq!(s, 429);
    assert_eq!(v["id"], "too_many_requests");
    assert!(header(&h, "retry-after").is_some());
    sim.stop().await;
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let sim = start_kibana(data(), None).await.unwrap();
    sim.faults().set_hang(true);
    // A client with a short timeout gives up.
    let err = kibana_agents(&sim)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    // A patient one gets its answer once the hang is lifted.
    let pending = tokio::spawn(send(kibana_agents(&sim)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    sim.faults().set_hang(false);
    let (s, _, _) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, 200);
    sim.stop().await;
}

#[tokio::test]
async fn stop_drops_hung_requests() {
    let sim = start_kibana(data(), None).await.unwrap();
    sim.faults().set_hang(true);
    let pending = tokio::spawn(kibana_agents(&sim).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(5), sim.stop())
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(res.is_err(), "the connection is closed, not answered");
}

#[tokio::test]
async fn malformed_json_is_200_garbage() {
    let sim = start_kibana(data(), None).await.unwrap();
    sim.faults().set_malformed_json(true);
    let r = kibana_agents(&sim).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"{\""));
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    // Errors stay errors.
    let (s, _, v) = send(client().get(format!("{}/api/agent_builder/agents", sim.base_url))).await;
    assert_eq!(s, 401);
    assert_eq!(v["statusCode"], 401);
    sim.stop().await;
}

#[tokio::test]
async fn truncated_body_is_half_of_the_real_one() {
    let sim = start_kibana(data(), None).await.unwrap();
    let full = kibana_agents(&sim)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(&full).is_ok());
    sim.faults().set_truncated(true);
    let r = kibana_agents(&sim).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cut = r.bytes().await.unwrap();
    assert_eq!(cut.len(), full.len() / 2);
    assert_eq!(&full[..cut.len()], &cut[..]);
    assert!(serde_json::from_slice::<Value>(&cut).is_err());
    sim.faults().clear();
    let again = kibana_agents(&sim)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(again, full);
    sim.stop().await;
}

#[tokio::test]
async fn counters_count_every_request_per_route() {
    let sims = start_all(&spec()).await.unwrap();
    let d = &sims.digitalocean;
    let c = client();
    send(do_agents(d)).await;
    send(c.get(format!("{}/v2/gen-ai/agents", d.base_url))).await; // 401
    d.faults().force_next(1, 500);
    send(do_agents(d)).await; // forced 500
    let uuid = &sims.data.digitalocean.agents()[0].uuid;
    send(
        c.get(format!("{}/v2/gen-ai/agents/{uuid}/usage", d.base_url))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    send(c.get(format!("{}/v2/nothing", d.base_url))).await;
    assert_eq!(d.calls("do.agents"), 3);
    assert_eq!(d.calls("do.usage"), 1);
    assert_eq!(d.calls("unknown"), 1);
    assert_eq!(d.total_calls(), 5);
    d.reset_calls();
    assert_eq!(d.total_calls(), 0);
    assert_eq!(d.calls("do.agents"), 0);

    let k = &sims.kibana;
    send(kibana_agents(k)).await;
    send(
        c.post(format!(
            "{}/s/marketing/api/agent_builder/agents/x/consumption",
            k.base_url
        ))
        .header("authorization", format!("ApiKey {KIBANA_API_KEY}"))
        .json(&json!({})),
    )
    .await; // 400: no kbn-xsrf
    assert_eq!(
        (k.calls("kibana.agents"), k.calls("kibana.consumption")),
        (1, 1)
    );

    let b = &sims.chatbotkit;
    let bot = &sims.data.chatbotkit.bots()[0].id;
    for path in [
        "/v1/bot/list",
        "/api/v1/usage/list",
        &format!("/v1/bot/{bot}/usage/fetch"),
    ] {
        send(
            c.get(format!("{}{path}", b.base_url))
                .bearer_auth(CBK_TOKEN),
        )
        .await;
    }
    assert_eq!(
        (
            b.calls("cbk.bots"),
            b.calls("cbk.usage_list"),
            b.calls("cbk.bot_usage")
        ),
        (1, 1, 1)
    );
    assert_eq!(b.total_calls(), 3);
    assert_eq!(d.total_calls(), 0, "counters are per simulator");
    sims.stop().await;
}
