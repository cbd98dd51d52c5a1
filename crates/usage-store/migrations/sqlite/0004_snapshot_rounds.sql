-- The rounds and LLM calls of each conversation's last snapshot, as the vendor reports them
-- (Kibana's `round_count` and `llm_calls`; NULL when it did not say). Keep in step with the
-- other engine's file of the same name.
ALTER TABLE usage_conversations ADD COLUMN rounds BIGINT CHECK (rounds >= 0);
ALTER TABLE usage_conversations ADD COLUMN llm_calls BIGINT CHECK (llm_calls >= 0);
