-- CreateTable
CREATE TABLE "ps_model_usage_user_day_rollup" (
    "user_id" INTEGER NOT NULL,
    "day_start" TIMESTAMPTZ NOT NULL,
    "model_id" INTEGER NOT NULL,
    "service_tier" VARCHAR(17) NOT NULL,
    "regional_processing" VARCHAR(17) NOT NULL,
    "event_count" BIGINT NOT NULL,
    "token_in_count" BIGINT NOT NULL,
    "token_in_cached_context_count" BIGINT NOT NULL,
    "token_in_cache_write_count" BIGINT NOT NULL,
    "long_context_token_in_count" BIGINT NOT NULL,
    "long_context_token_in_cached_context_count" BIGINT NOT NULL,
    "long_context_token_in_cache_write_count" BIGINT NOT NULL,
    "token_out_count" BIGINT NOT NULL,
    "token_out_reasoning_count" BIGINT NOT NULL,
    "token_out_audio_count" BIGINT NOT NULL,
    "token_out_image_count" BIGINT NOT NULL,
    "long_context_token_out_count" BIGINT NOT NULL,
    "long_context_token_out_reasoning_count" BIGINT NOT NULL,
    "long_context_token_out_audio_count" BIGINT NOT NULL,
    "long_context_token_out_image_count" BIGINT NOT NULL,
    "web_search_count" BIGINT NOT NULL,

    CONSTRAINT "ps_model_usage_user_day_rollup_pkey" PRIMARY KEY ("user_id","day_start","model_id","service_tier","regional_processing")
);

-- CreateTable
CREATE TABLE "ps_external_api_usage_user_day_rollup" (
    "user_id" INTEGER NOT NULL,
    "day_start" TIMESTAMPTZ NOT NULL,
    "external_api_id" INTEGER NOT NULL,
    "event_count" BIGINT NOT NULL,
    "call_count" BIGINT NOT NULL,

    CONSTRAINT "ps_external_api_usage_user_day_rollup_pkey" PRIMARY KEY ("user_id","day_start","external_api_id")
);

-- CreateTable
CREATE TABLE "ps_model_usage_connector_day_rollup" (
    "connector_id" INTEGER NOT NULL,
    "day_start" TIMESTAMPTZ NOT NULL,
    "model_id" INTEGER NOT NULL,
    "service_tier" VARCHAR(17) NOT NULL,
    "regional_processing" VARCHAR(17) NOT NULL,
    "event_count" BIGINT NOT NULL,
    "token_in_count" BIGINT NOT NULL,
    "token_in_cached_context_count" BIGINT NOT NULL,
    "token_in_cache_write_count" BIGINT NOT NULL,
    "long_context_token_in_count" BIGINT NOT NULL,
    "long_context_token_in_cached_context_count" BIGINT NOT NULL,
    "long_context_token_in_cache_write_count" BIGINT NOT NULL,
    "token_out_count" BIGINT NOT NULL,
    "token_out_reasoning_count" BIGINT NOT NULL,
    "token_out_audio_count" BIGINT NOT NULL,
    "token_out_image_count" BIGINT NOT NULL,
    "long_context_token_out_count" BIGINT NOT NULL,
    "long_context_token_out_reasoning_count" BIGINT NOT NULL,
    "long_context_token_out_audio_count" BIGINT NOT NULL,
    "long_context_token_out_image_count" BIGINT NOT NULL,
    "web_search_count" BIGINT NOT NULL,

    CONSTRAINT "ps_model_usage_connector_day_rollup_pkey" PRIMARY KEY ("connector_id","day_start","model_id","service_tier","regional_processing")
);

-- CreateTable
CREATE TABLE "ps_external_api_usage_connector_day_rollup" (
    "connector_id" INTEGER NOT NULL,
    "day_start" TIMESTAMPTZ NOT NULL,
    "external_api_id" INTEGER NOT NULL,
    "event_count" BIGINT NOT NULL,
    "call_count" BIGINT NOT NULL,

    CONSTRAINT "ps_external_api_usage_connector_day_rollup_pkey" PRIMARY KEY ("connector_id","day_start","external_api_id")
);

-- Below: what Prisma's schema cannot express, added to the SQL Prisma generated above (as in the
-- earlier rollup migrations: function bodies are E'' strings with \073 for each semicolon, because
-- @prisma/adapter-pg's executeScript splits a migration at every semicolon).
--
-- Why these levels: a report or budget scoped to one user (or one connector) could read only the
-- full-key 15-minute rollup, which with many agents holds about a row per event, so the busiest
-- user's month grew with that user's events (issue 14: budgetStatus 1.9 s at 30M rows). Per user
-- (connector), UTC day and model it is at most one row per day, model, tier and region.
--
-- Why the key starts with the user (connector), not the day as in the agent levels: the read that
-- matters is one user's days ("this user, this month"). User first, that is one index range of
-- about 30 days x models rows. Day first, it is either 30 ranges (PostgreSQL 15 has no skip scan)
-- or one range over every user's rows of those days with the others filtered out, which grows
-- with the number of users (thousands). A report over every user and a range of days reads the
-- whole level either way, sequentially: the level is small (users x days x models). Writes are
-- no worse: a statement's rows are upserted in this key order, and the level has one index.

-- Room on every page for updated rows (HOT updates), as for the other small levels.
ALTER TABLE ps_model_usage_user_day_rollup SET (fillfactor = 50);
ALTER TABLE ps_external_api_usage_user_day_rollup SET (fillfactor = 50);
ALTER TABLE ps_model_usage_connector_day_rollup SET (fillfactor = 50);
ALTER TABLE ps_external_api_usage_connector_day_rollup SET (fillfactor = 50);

-- The rollup functions of the usage_rollup_months migration, every level kept as it was, now also
-- keeping the per-user and per-connector daily levels. They come last, in the same fixed table
-- order for every writer and operation (15-minute, per model, per agent day, per agent month, per
-- user day, per connector day), each in its key order: no deadlock between concurrent writers, no
-- lost increment. A delete with ps_usage.keep_rollups = on (prune) leaves every level alone.

CREATE OR REPLACE FUNCTION ps_model_usage_rollup_apply() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS E'
BEGIN
  IF TG_OP = ''TRUNCATE'' THEN
    TRUNCATE ps_model_usage_rollup\073
    TRUNCATE ps_model_usage_model_rollup\073
    TRUNCATE ps_model_usage_agent_day_rollup\073
    TRUNCATE ps_model_usage_agent_month_rollup\073
    TRUNCATE ps_model_usage_user_day_rollup\073
    TRUNCATE ps_model_usage_connector_day_rollup\073
  ELSIF TG_OP = ''INSERT'' THEN
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.model_id, COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0), COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5, 6, 7
      ORDER BY 1, 2, 3, 4, 5, 6, 7
      ON CONFLICT (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_model_rollup AS r (slot_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4
      ON CONFLICT (slot_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_agent_day_rollup AS r (day_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(n.agent_id, 0), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (day_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_agent_month_rollup AS r (month_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_trunc(''month'', n.created_at, ''UTC''), COALESCE(n.agent_id, 0), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (month_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_user_day_rollup AS r (user_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT n.user_id, date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (user_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_connector_day_rollup AS r (connector_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT COALESCE(n.connector_id, 0), date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (connector_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
  ELSIF TG_OP = ''DELETE'' THEN
    IF current_setting(''ps_usage.keep_rollups'', true) = ''on'' THEN
      RETURN NULL\073
    END IF\073
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0), COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5, 6, 7
      ORDER BY 1, 2, 3, 4, 5, 6, 7
      ON CONFLICT (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0), COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.user_id, r.model_id, r.agent_id, r.connector_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.user_id, k.model_id, k.agent_id, k.connector_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_model_rollup AS r (slot_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4
      ON CONFLICT (slot_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_model_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, model_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_agent_day_rollup AS r (day_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (day_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_agent_month_rollup AS r (month_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (month_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_agent_day_rollup r
      USING (SELECT DISTINCT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(day_start, agent_id, model_id, service_tier, regional_processing)
      WHERE (r.day_start, r.agent_id, r.model_id, r.service_tier, r.regional_processing)
          = (k.day_start, k.agent_id, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    DELETE FROM ps_model_usage_agent_month_rollup r
      USING (SELECT DISTINCT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(month_start, agent_id, model_id, service_tier, regional_processing)
      WHERE (r.month_start, r.agent_id, r.model_id, r.service_tier, r.regional_processing)
          = (k.month_start, k.agent_id, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_user_day_rollup AS r (user_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (user_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_connector_day_rollup AS r (connector_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (connector_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_user_day_rollup r
      USING (SELECT DISTINCT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(user_id, day_start, model_id, service_tier, regional_processing)
      WHERE (r.user_id, r.day_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.user_id, k.day_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    DELETE FROM ps_model_usage_connector_day_rollup r
      USING (SELECT DISTINCT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(connector_id, day_start, model_id, service_tier, regional_processing)
      WHERE (r.connector_id, r.day_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.connector_id, k.day_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
  ELSE
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.model_id, COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0), COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5, 6, 7
            UNION ALL
            SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0), COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5, 6, 7) AS d(slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4, 5, 6, 7
      ORDER BY 1, 2, 3, 4, 5, 6, 7
      ON CONFLICT (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0), COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.user_id, r.model_id, r.agent_id, r.connector_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.user_id, k.model_id, k.agent_id, k.connector_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_model_rollup AS r (slot_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT slot_start, model_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4
            UNION ALL
            SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4) AS d(slot_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4
      ON CONFLICT (slot_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_model_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, model_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_agent_day_rollup AS r (day_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT day_start, agent_id, model_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(n.agent_id, 0), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(day_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (day_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_agent_month_rollup AS r (month_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT month_start, agent_id, model_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT date_trunc(''month'', n.created_at, ''UTC''), COALESCE(n.agent_id, 0), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(month_start, agent_id, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (month_start, agent_id, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_agent_day_rollup r
      USING (SELECT DISTINCT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(day_start, agent_id, model_id, service_tier, regional_processing)
      WHERE (r.day_start, r.agent_id, r.model_id, r.service_tier, r.regional_processing)
          = (k.day_start, k.agent_id, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    DELETE FROM ps_model_usage_agent_month_rollup r
      USING (SELECT DISTINCT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(month_start, agent_id, model_id, service_tier, regional_processing)
      WHERE (r.month_start, r.agent_id, r.model_id, r.service_tier, r.regional_processing)
          = (k.month_start, k.agent_id, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    INSERT INTO ps_model_usage_user_day_rollup AS r (user_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT user_id, day_start, model_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT n.user_id, date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(user_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (user_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    INSERT INTO ps_model_usage_connector_day_rollup AS r (connector_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT connector_id, day_start, model_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT COALESCE(n.connector_id, 0), date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.model_id, COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
           -count(*), -sum(o.token_in_count), -sum(o.token_in_cached_context_count), -sum(o.token_in_cache_write_count), -sum(o.long_context_token_in_count), -sum(o.long_context_token_in_cached_context_count), -sum(o.long_context_token_in_cache_write_count), -sum(o.token_out_count), -sum(o.token_out_reasoning_count), -sum(o.token_out_audio_count), -sum(o.token_out_image_count), -sum(o.long_context_token_out_count), -sum(o.long_context_token_out_reasoning_count), -sum(o.long_context_token_out_audio_count), -sum(o.long_context_token_out_image_count), -sum(o.web_search_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(connector_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (connector_id, day_start, model_id, service_tier, regional_processing) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        token_in_count = r.token_in_count + EXCLUDED.token_in_count,
        token_in_cached_context_count = r.token_in_cached_context_count + EXCLUDED.token_in_cached_context_count,
        token_in_cache_write_count = r.token_in_cache_write_count + EXCLUDED.token_in_cache_write_count,
        long_context_token_in_count = r.long_context_token_in_count + EXCLUDED.long_context_token_in_count,
        long_context_token_in_cached_context_count = r.long_context_token_in_cached_context_count + EXCLUDED.long_context_token_in_cached_context_count,
        long_context_token_in_cache_write_count = r.long_context_token_in_cache_write_count + EXCLUDED.long_context_token_in_cache_write_count,
        token_out_count = r.token_out_count + EXCLUDED.token_out_count,
        token_out_reasoning_count = r.token_out_reasoning_count + EXCLUDED.token_out_reasoning_count,
        token_out_audio_count = r.token_out_audio_count + EXCLUDED.token_out_audio_count,
        token_out_image_count = r.token_out_image_count + EXCLUDED.token_out_image_count,
        long_context_token_out_count = r.long_context_token_out_count + EXCLUDED.long_context_token_out_count,
        long_context_token_out_reasoning_count = r.long_context_token_out_reasoning_count + EXCLUDED.long_context_token_out_reasoning_count,
        long_context_token_out_audio_count = r.long_context_token_out_audio_count + EXCLUDED.long_context_token_out_audio_count,
        long_context_token_out_image_count = r.long_context_token_out_image_count + EXCLUDED.long_context_token_out_image_count,
        web_search_count = r.web_search_count + EXCLUDED.web_search_count\073
    DELETE FROM ps_model_usage_user_day_rollup r
      USING (SELECT DISTINCT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(user_id, day_start, model_id, service_tier, regional_processing)
      WHERE (r.user_id, r.day_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.user_id, k.day_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
    DELETE FROM ps_model_usage_connector_day_rollup r
      USING (SELECT DISTINCT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.model_id, COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(connector_id, day_start, model_id, service_tier, regional_processing)
      WHERE (r.connector_id, r.day_start, r.model_id, r.service_tier, r.regional_processing)
          = (k.connector_id, k.day_start, k.model_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
  END IF\073
  RETURN NULL\073
END
';

CREATE OR REPLACE FUNCTION ps_external_api_usage_rollup_apply() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS E'
BEGIN
  IF TG_OP = ''TRUNCATE'' THEN
    TRUNCATE ps_external_api_usage_rollup\073
    TRUNCATE ps_external_api_usage_agent_day_rollup\073
    TRUNCATE ps_external_api_usage_agent_month_rollup\073
    TRUNCATE ps_external_api_usage_user_day_rollup\073
    TRUNCATE ps_external_api_usage_connector_day_rollup\073
  ELSIF TG_OP = ''INSERT'' THEN
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.external_api_id, COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_agent_day_rollup AS r (day_start, agent_id, external_api_id, event_count, call_count)
      SELECT date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(n.agent_id, 0), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (day_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_agent_month_rollup AS r (month_start, agent_id, external_api_id, event_count, call_count)
      SELECT date_trunc(''month'', n.created_at, ''UTC''), COALESCE(n.agent_id, 0), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (month_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_user_day_rollup AS r (user_id, day_start, external_api_id, event_count, call_count)
      SELECT n.user_id, date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (user_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_connector_day_rollup AS r (connector_id, day_start, external_api_id, event_count, call_count)
      SELECT COALESCE(n.connector_id, 0), date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (connector_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
  ELSIF TG_OP = ''DELETE'' THEN
    IF current_setting(''ps_usage.keep_rollups'', true) = ''on'' THEN
      RETURN NULL\073
    END IF\073
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0) FROM old_rows o) AS k(slot_start, user_id, external_api_id, agent_id, connector_id)
      WHERE (r.slot_start, r.user_id, r.external_api_id, r.agent_id, r.connector_id)
          = (k.slot_start, k.user_id, k.external_api_id, k.agent_id, k.connector_id)
        AND r.event_count = 0\073
    INSERT INTO ps_external_api_usage_agent_day_rollup AS r (day_start, agent_id, external_api_id, event_count, call_count)
      SELECT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (day_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_agent_month_rollup AS r (month_start, agent_id, external_api_id, event_count, call_count)
      SELECT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (month_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_agent_day_rollup r
      USING (SELECT DISTINCT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.external_api_id FROM old_rows o) AS k(day_start, agent_id, external_api_id)
      WHERE (r.day_start, r.agent_id, r.external_api_id)
          = (k.day_start, k.agent_id, k.external_api_id)
        AND r.event_count = 0\073
    DELETE FROM ps_external_api_usage_agent_month_rollup r
      USING (SELECT DISTINCT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.external_api_id FROM old_rows o) AS k(month_start, agent_id, external_api_id)
      WHERE (r.month_start, r.agent_id, r.external_api_id)
          = (k.month_start, k.agent_id, k.external_api_id)
        AND r.event_count = 0\073
    INSERT INTO ps_external_api_usage_user_day_rollup AS r (user_id, day_start, external_api_id, event_count, call_count)
      SELECT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (user_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_connector_day_rollup AS r (connector_id, day_start, external_api_id, event_count, call_count)
      SELECT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (connector_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_user_day_rollup r
      USING (SELECT DISTINCT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id FROM old_rows o) AS k(user_id, day_start, external_api_id)
      WHERE (r.user_id, r.day_start, r.external_api_id)
          = (k.user_id, k.day_start, k.external_api_id)
        AND r.event_count = 0\073
    DELETE FROM ps_external_api_usage_connector_day_rollup r
      USING (SELECT DISTINCT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id FROM old_rows o) AS k(connector_id, day_start, external_api_id)
      WHERE (r.connector_id, r.day_start, r.external_api_id)
          = (k.connector_id, k.day_start, k.external_api_id)
        AND r.event_count = 0\073
  ELSE
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT slot_start, user_id, external_api_id, agent_id, connector_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.external_api_id, COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id, COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0) FROM old_rows o) AS k(slot_start, user_id, external_api_id, agent_id, connector_id)
      WHERE (r.slot_start, r.user_id, r.external_api_id, r.agent_id, r.connector_id)
          = (k.slot_start, k.user_id, k.external_api_id, k.agent_id, k.connector_id)
        AND r.event_count = 0\073
    INSERT INTO ps_external_api_usage_agent_day_rollup AS r (day_start, agent_id, external_api_id, event_count, call_count)
      SELECT day_start, agent_id, external_api_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(n.agent_id, 0), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
            UNION ALL
            SELECT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3) AS d(day_start, agent_id, external_api_id, event_count, call_count)
      GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (day_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_agent_month_rollup AS r (month_start, agent_id, external_api_id, event_count, call_count)
      SELECT month_start, agent_id, external_api_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT date_trunc(''month'', n.created_at, ''UTC''), COALESCE(n.agent_id, 0), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
            UNION ALL
            SELECT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3) AS d(month_start, agent_id, external_api_id, event_count, call_count)
      GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (month_start, agent_id, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_agent_day_rollup r
      USING (SELECT DISTINCT date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), COALESCE(o.agent_id, 0), o.external_api_id FROM old_rows o) AS k(day_start, agent_id, external_api_id)
      WHERE (r.day_start, r.agent_id, r.external_api_id)
          = (k.day_start, k.agent_id, k.external_api_id)
        AND r.event_count = 0\073
    DELETE FROM ps_external_api_usage_agent_month_rollup r
      USING (SELECT DISTINCT date_trunc(''month'', o.created_at, ''UTC''), COALESCE(o.agent_id, 0), o.external_api_id FROM old_rows o) AS k(month_start, agent_id, external_api_id)
      WHERE (r.month_start, r.agent_id, r.external_api_id)
          = (k.month_start, k.agent_id, k.external_api_id)
        AND r.event_count = 0\073
    INSERT INTO ps_external_api_usage_user_day_rollup AS r (user_id, day_start, external_api_id, event_count, call_count)
      SELECT user_id, day_start, external_api_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT n.user_id, date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
            UNION ALL
            SELECT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3) AS d(user_id, day_start, external_api_id, event_count, call_count)
      GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (user_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    INSERT INTO ps_external_api_usage_connector_day_rollup AS r (connector_id, day_start, external_api_id, event_count, call_count)
      SELECT connector_id, day_start, external_api_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT COALESCE(n.connector_id, 0), date_bin(''1 day'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.external_api_id,
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3
            UNION ALL
            SELECT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id,
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3) AS d(connector_id, day_start, external_api_id, event_count, call_count)
      GROUP BY 1, 2, 3
      ORDER BY 1, 2, 3
      ON CONFLICT (connector_id, day_start, external_api_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_user_day_rollup r
      USING (SELECT DISTINCT o.user_id, date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id FROM old_rows o) AS k(user_id, day_start, external_api_id)
      WHERE (r.user_id, r.day_start, r.external_api_id)
          = (k.user_id, k.day_start, k.external_api_id)
        AND r.event_count = 0\073
    DELETE FROM ps_external_api_usage_connector_day_rollup r
      USING (SELECT DISTINCT COALESCE(o.connector_id, 0), date_bin(''1 day'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.external_api_id FROM old_rows o) AS k(connector_id, day_start, external_api_id)
      WHERE (r.connector_id, r.day_start, r.external_api_id)
          = (k.connector_id, k.day_start, k.external_api_id)
        AND r.event_count = 0\073
  END IF\073
  RETURN NULL\073
END
';

-- The new levels filled from the 15-minute rollups (not the ledger: before a prune point they are
-- the only record of the pruned rows), with writes locked out so that no statement is counted
-- twice or missed: the functions above are in place before the lock (a writer that committed
-- before it is in the 15-minute rollups, one after it runs the new functions), the levels are
-- emptied and refilled under it. One DO block: one statement and one transaction however the
-- migration is run (our migrate runs the whole migration in one transaction, an executor that
-- runs each statement on its own still gets the lock, the delete and the fill together).
-- Written in key order, as the triggers write them over time. Readers are not blocked.
DO E'
BEGIN
  LOCK TABLE ps_model_usage, ps_external_api_usage IN SHARE ROW EXCLUSIVE MODE\073
  DELETE FROM ps_model_usage_user_day_rollup\073
  INSERT INTO ps_model_usage_user_day_rollup (user_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
  SELECT r.user_id, date_bin(''1 day'', r.slot_start, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), r.model_id, r.service_tier, r.regional_processing, sum(r.event_count), sum(r.token_in_count), sum(r.token_in_cached_context_count), sum(r.token_in_cache_write_count), sum(r.long_context_token_in_count), sum(r.long_context_token_in_cached_context_count), sum(r.long_context_token_in_cache_write_count), sum(r.token_out_count), sum(r.token_out_reasoning_count), sum(r.token_out_audio_count), sum(r.token_out_image_count), sum(r.long_context_token_out_count), sum(r.long_context_token_out_reasoning_count), sum(r.long_context_token_out_audio_count), sum(r.long_context_token_out_image_count), sum(r.web_search_count)
  FROM ps_model_usage_rollup r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5\073
  DELETE FROM ps_model_usage_connector_day_rollup\073
  INSERT INTO ps_model_usage_connector_day_rollup (connector_id, day_start, model_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
  SELECT r.connector_id, date_bin(''1 day'', r.slot_start, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), r.model_id, r.service_tier, r.regional_processing, sum(r.event_count), sum(r.token_in_count), sum(r.token_in_cached_context_count), sum(r.token_in_cache_write_count), sum(r.long_context_token_in_count), sum(r.long_context_token_in_cached_context_count), sum(r.long_context_token_in_cache_write_count), sum(r.token_out_count), sum(r.token_out_reasoning_count), sum(r.token_out_audio_count), sum(r.token_out_image_count), sum(r.long_context_token_out_count), sum(r.long_context_token_out_reasoning_count), sum(r.long_context_token_out_audio_count), sum(r.long_context_token_out_image_count), sum(r.web_search_count)
  FROM ps_model_usage_rollup r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5\073
  DELETE FROM ps_external_api_usage_user_day_rollup\073
  INSERT INTO ps_external_api_usage_user_day_rollup (user_id, day_start, external_api_id, event_count, call_count)
  SELECT r.user_id, date_bin(''1 day'', r.slot_start, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), r.external_api_id, sum(r.event_count), sum(r.call_count)
  FROM ps_external_api_usage_rollup r GROUP BY 1, 2, 3 ORDER BY 1, 2, 3\073
  DELETE FROM ps_external_api_usage_connector_day_rollup\073
  INSERT INTO ps_external_api_usage_connector_day_rollup (connector_id, day_start, external_api_id, event_count, call_count)
  SELECT r.connector_id, date_bin(''1 day'', r.slot_start, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), r.external_api_id, sum(r.event_count), sum(r.call_count)
  FROM ps_external_api_usage_rollup r GROUP BY 1, 2, 3 ORDER BY 1, 2, 3\073
END';

-- Statistics for the planner on the filled levels (autovacuum would get to them later).
ANALYZE ps_model_usage_user_day_rollup, ps_external_api_usage_user_day_rollup, ps_model_usage_connector_day_rollup, ps_external_api_usage_connector_day_rollup;
