-- CreateTable
CREATE TABLE "ps_model_usage_rollup" (
    "slot_start" TIMESTAMPTZ NOT NULL,
    "user_id" INTEGER NOT NULL,
    "model_id" INTEGER NOT NULL,
    "agent_id" INTEGER NOT NULL,
    "connector_id" INTEGER NOT NULL,
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

    CONSTRAINT "ps_model_usage_rollup_pkey" PRIMARY KEY ("slot_start","user_id","model_id","agent_id","connector_id","service_tier","regional_processing")
);

-- CreateTable
CREATE TABLE "ps_external_api_usage_rollup" (
    "slot_start" TIMESTAMPTZ NOT NULL,
    "user_id" INTEGER NOT NULL,
    "external_api_id" INTEGER NOT NULL,
    "agent_id" INTEGER NOT NULL,
    "connector_id" INTEGER NOT NULL,
    "event_count" BIGINT NOT NULL,
    "call_count" BIGINT NOT NULL,

    CONSTRAINT "ps_external_api_usage_rollup_pkey" PRIMARY KEY ("slot_start","user_id","external_api_id","agent_id","connector_id")
);

-- CreateTable
CREATE TABLE "ps_usage_prune_state" (
    "table_name" VARCHAR(64) NOT NULL,
    "pruned_before" TIMESTAMPTZ NOT NULL,
    "pruned_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_usage_prune_state_pkey" PRIMARY KEY ("table_name")
);

-- CreateIndex
CREATE INDEX "ps_model_usage_rollup_agent_id_slot_start" ON "ps_model_usage_rollup"("agent_id", "slot_start");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_rollup_agent_id_slot_start" ON "ps_external_api_usage_rollup"("agent_id", "slot_start");

-- Below: what Prisma's schema cannot express (functions and triggers), added to the SQL Prisma
-- generated above, as Prisma's docs describe for customizing a migration. The function bodies are
-- E'' strings with \073 for each semicolon inside them: Prisma's driver-adapter path
-- (@prisma/adapter-pg's executeScript) splits a migration at every semicolon, even inside $$ bodies.

-- Keeps ps_model_usage_rollup equal to ps_model_usage summed per slot and key, for every write by anyone
-- (this package, PolicySynth's Sequelize models, SQL): one statement-level upsert per write
-- statement, from its transition table, in a fixed key order so that concurrent writers lock the
-- rollup rows in the same order (no deadlock) and add to them rather than overwrite (no lost
-- increment). A transaction that sets ps_usage.keep_rollups to 'on' deletes ledger rows and
-- leaves the rollups as they are (prune: the sums still hold the pruned rows).
CREATE FUNCTION ps_model_usage_rollup_apply() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS E'
BEGIN
  IF TG_OP = ''TRUNCATE'' THEN
    TRUNCATE ps_model_usage_rollup\073
  ELSIF TG_OP = ''INSERT'' THEN
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.model_id,
           COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
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
  ELSIF TG_OP = ''DELETE'' THEN
    IF current_setting(''ps_usage.keep_rollups'', true) = ''on'' THEN
      RETURN NULL\073
    END IF\073
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
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
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.user_id, r.model_id, r.agent_id, r.connector_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.user_id, k.model_id, k.agent_id, k.connector_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
  ELSE
    INSERT INTO ps_model_usage_rollup AS r (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
      SELECT slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, sum(d.event_count), sum(d.token_in_count), sum(d.token_in_cached_context_count), sum(d.token_in_cache_write_count), sum(d.long_context_token_in_count), sum(d.long_context_token_in_cached_context_count), sum(d.long_context_token_in_cache_write_count), sum(d.token_out_count), sum(d.token_out_reasoning_count), sum(d.token_out_audio_count), sum(d.token_out_image_count), sum(d.long_context_token_out_count), sum(d.long_context_token_out_reasoning_count), sum(d.long_context_token_out_audio_count), sum(d.long_context_token_out_image_count), sum(d.web_search_count)
      FROM (SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.model_id,
           COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           COALESCE(''='' || n.service_tier, ''''), COALESCE(''='' || n.regional_processing, ''''),
           count(*), sum(n.token_in_count), sum(n.token_in_cached_context_count), sum(n.token_in_cache_write_count), sum(n.long_context_token_in_count), sum(n.long_context_token_in_cached_context_count), sum(n.long_context_token_in_cache_write_count), sum(n.token_out_count), sum(n.token_out_reasoning_count), sum(n.token_out_audio_count), sum(n.token_out_image_count), sum(n.long_context_token_out_count), sum(n.long_context_token_out_reasoning_count), sum(n.long_context_token_out_audio_count), sum(n.long_context_token_out_image_count), sum(n.web_search_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5, 6, 7
            UNION ALL
            SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, ''''),
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
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.model_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           COALESCE(''='' || o.service_tier, ''''), COALESCE(''='' || o.regional_processing, '''') FROM old_rows o) AS k(slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing)
      WHERE (r.slot_start, r.user_id, r.model_id, r.agent_id, r.connector_id, r.service_tier, r.regional_processing)
          = (k.slot_start, k.user_id, k.model_id, k.agent_id, k.connector_id, k.service_tier, k.regional_processing)
        AND r.event_count = 0\073
  END IF\073
  RETURN NULL\073
END
';

-- Keeps ps_external_api_usage_rollup equal to ps_external_api_usage summed per slot and key, for every write by anyone
-- (this package, PolicySynth's Sequelize models, SQL): one statement-level upsert per write
-- statement, from its transition table, in a fixed key order so that concurrent writers lock the
-- rollup rows in the same order (no deadlock) and add to them rather than overwrite (no lost
-- increment). A transaction that sets ps_usage.keep_rollups to 'on' deletes ledger rows and
-- leaves the rollups as they are (prune: the sums still hold the pruned rows).
CREATE FUNCTION ps_external_api_usage_rollup_apply() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS E'
BEGIN
  IF TG_OP = ''TRUNCATE'' THEN
    TRUNCATE ps_external_api_usage_rollup\073
  ELSIF TG_OP = ''INSERT'' THEN
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.external_api_id,
           COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
  ELSIF TG_OP = ''DELETE'' THEN
    IF current_setting(''ps_usage.keep_rollups'', true) = ''on'' THEN
      RETURN NULL\073
    END IF\073
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0) FROM old_rows o) AS k(slot_start, user_id, external_api_id, agent_id, connector_id)
      WHERE (r.slot_start, r.user_id, r.external_api_id, r.agent_id, r.connector_id)
          = (k.slot_start, k.user_id, k.external_api_id, k.agent_id, k.connector_id)
        AND r.event_count = 0\073
  ELSE
    INSERT INTO ps_external_api_usage_rollup AS r (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      SELECT slot_start, user_id, external_api_id, agent_id, connector_id, sum(d.event_count), sum(d.call_count)
      FROM (SELECT date_bin(''15 minutes'', n.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), n.user_id, n.external_api_id,
           COALESCE(n.agent_id, 0), COALESCE(n.connector_id, 0),
           count(*), sum(n.call_count)
      FROM new_rows n GROUP BY 1, 2, 3, 4, 5
            UNION ALL
            SELECT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0),
           -count(*), -sum(o.call_count)
      FROM old_rows o GROUP BY 1, 2, 3, 4, 5) AS d(slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY 1, 2, 3, 4, 5
      ON CONFLICT (slot_start, user_id, external_api_id, agent_id, connector_id) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count,
        call_count = r.call_count + EXCLUDED.call_count\073
    DELETE FROM ps_external_api_usage_rollup r
      USING (SELECT DISTINCT date_bin(''15 minutes'', o.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), o.user_id, o.external_api_id,
           COALESCE(o.agent_id, 0), COALESCE(o.connector_id, 0) FROM old_rows o) AS k(slot_start, user_id, external_api_id, agent_id, connector_id)
      WHERE (r.slot_start, r.user_id, r.external_api_id, r.agent_id, r.connector_id)
          = (k.slot_start, k.user_id, k.external_api_id, k.agent_id, k.connector_id)
        AND r.event_count = 0\073
  END IF\073
  RETURN NULL\073
END
';

-- The ledger tables are locked against writes (reads go on) while the triggers are created and
-- the rollups filled from the rows already there, so that no row is missed or counted twice.
-- One DO block, so that it is one statement (and one transaction) however the migration is run.
DO E'
BEGIN
  LOCK TABLE ps_model_usage, ps_external_api_usage IN SHARE ROW EXCLUSIVE MODE\073

  CREATE TRIGGER ps_model_usage_rollup_insert AFTER INSERT ON ps_model_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_model_usage_rollup_apply()\073
  CREATE TRIGGER ps_model_usage_rollup_update AFTER UPDATE ON ps_model_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_model_usage_rollup_apply()\073
  CREATE TRIGGER ps_model_usage_rollup_delete AFTER DELETE ON ps_model_usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_model_usage_rollup_apply()\073
  CREATE TRIGGER ps_model_usage_rollup_truncate AFTER TRUNCATE ON ps_model_usage
    FOR EACH STATEMENT EXECUTE FUNCTION ps_model_usage_rollup_apply()\073

  CREATE TRIGGER ps_external_api_usage_rollup_insert AFTER INSERT ON ps_external_api_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_external_api_usage_rollup_apply()\073
  CREATE TRIGGER ps_external_api_usage_rollup_update AFTER UPDATE ON ps_external_api_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_external_api_usage_rollup_apply()\073
  CREATE TRIGGER ps_external_api_usage_rollup_delete AFTER DELETE ON ps_external_api_usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_external_api_usage_rollup_apply()\073
  CREATE TRIGGER ps_external_api_usage_rollup_truncate AFTER TRUNCATE ON ps_external_api_usage
    FOR EACH STATEMENT EXECUTE FUNCTION ps_external_api_usage_rollup_apply()\073

  INSERT INTO ps_model_usage_rollup (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing, event_count, token_in_count, token_in_cached_context_count, token_in_cache_write_count, long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count, web_search_count)
  SELECT date_bin(''15 minutes'', u.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), u.user_id, u.model_id,
             COALESCE(u.agent_id, 0), COALESCE(u.connector_id, 0),
             COALESCE(''='' || u.service_tier, ''''), COALESCE(''='' || u.regional_processing, ''''),
         count(*), sum(u.token_in_count), sum(u.token_in_cached_context_count), sum(u.token_in_cache_write_count), sum(u.long_context_token_in_count), sum(u.long_context_token_in_cached_context_count), sum(u.long_context_token_in_cache_write_count), sum(u.token_out_count), sum(u.token_out_reasoning_count), sum(u.token_out_audio_count), sum(u.token_out_image_count), sum(u.long_context_token_out_count), sum(u.long_context_token_out_reasoning_count), sum(u.long_context_token_out_audio_count), sum(u.long_context_token_out_image_count), sum(u.web_search_count)
  FROM ps_model_usage u GROUP BY 1, 2, 3, 4, 5, 6, 7\073

  INSERT INTO ps_external_api_usage_rollup (slot_start, user_id, external_api_id, agent_id, connector_id, event_count, call_count)
  SELECT date_bin(''15 minutes'', u.created_at, TIMESTAMPTZ ''2000-01-01 00:00:00+00''), u.user_id, u.external_api_id,
             COALESCE(u.agent_id, 0), COALESCE(u.connector_id, 0),
         count(*), sum(u.call_count)
  FROM ps_external_api_usage u GROUP BY 1, 2, 3, 4, 5\073
END';
