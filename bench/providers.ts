/**
 * `npm run bench:providers`: what recording through `recordProviderUsageBatch` (each provider's
 * own usage object mapped, split at the model's long-context threshold in force, tier and web
 * searches stored) costs over plain `recordModelUsageBatch` of the same calls already turned into
 * counters. Same database, same batches, the two contenders alternating batch by batch and the
 * whole repeated; each run gives a ratio (both contenders met the same load in it), and the
 * median of the runs' ratios is the figure, with their range (target: under 1.10).
 *
 * BENCH_PROVIDER_CALLS (default 200,000) calls in batches of BENCH_PROVIDER_BATCH (default 5,000),
 * BENCH_PROVIDER_RUNS (default 7) runs of each; BENCH_ADMIN_URL: the server.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  openDatabase,
  providerUsageToModelUsage,
  recordModelUsageBatch,
  recordProviderUsageBatch,
  serviceTierOf,
  setModelPrice,
  usageFromAnthropic,
  usageFromGemini,
  usageFromOpenAI,
  MODEL_USAGE_ALL_COUNTERS,
  type ModelUsageInput,
  type ProviderUsageCall,
} from "../src";
import { PACKAGE_ROOT } from "../src/schema/migrate";
import { admin, urlFor } from "./setup";

const CALLS = Number(process.env.BENCH_PROVIDER_CALLS ?? "200000");
const BATCH = Number(process.env.BENCH_PROVIDER_BATCH ?? "5000");
const RUNS = Number(process.env.BENCH_PROVIDER_RUNS ?? "7");


/**
 * A deterministic mix of the three providers' usage objects. Calls (and the plain inputs below)
 * are object literals, as a caller writes them: V8 reads objects built by spreading (`{ ...common,
 * provider }`) several times slower (validating such a call measured 1.8 us against 0.38 us), a
 * cost of the benchmark's own data that would land on whichever contender got such objects.
 */
function makeCalls(modelIds: number[], agentIds: number[]): ProviderUsageCall[] {
  const calls: ProviderUsageCall[] = [];
  let x = 12345;
  const next = (n: number) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
  const start = Date.parse("2026-09-01T00:00:00Z");
  for (let i = 0; i < CALLS; i++) {
    const userId = 1 + next(5);
    const modelId = modelIds[i % modelIds.length];
    const agentId = agentIds[next(agentIds.length)];
    const createdAt = new Date(start + i * 1000);
    const input = 200 + next(40_000);
    const cached = next(input);
    const output = 50 + next(2000);
    const reasoning = next(output);
    switch (i % 3) {
      case 0:
        calls.push({
          provider: "openai",
          usage: {
            prompt_tokens: input,
            completion_tokens: output,
            total_tokens: input + output,
            prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
            completion_tokens_details: { reasoning_tokens: reasoning, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
          },
          serviceTier: i % 10 === 0 ? "flex" : "default",
          userId,
          modelId,
          agentId,
          createdAt,
        });
        break;
      case 1:
        calls.push({
          provider: "anthropic",
          usage: {
            input_tokens: input,
            cache_read_input_tokens: cached,
            cache_creation_input_tokens: 100,
            cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 0 },
            output_tokens: output,
            server_tool_use: { web_search_requests: next(3) },
            service_tier: "standard",
          },
          userId,
          modelId,
          agentId,
          createdAt,
        });
        break;
      default:
        calls.push({
          provider: "gemini",
          usage: { promptTokenCount: input, cachedContentTokenCount: cached, candidatesTokenCount: output, thoughtsTokenCount: reasoning, totalTokenCount: input + output + reasoning },
          userId,
          modelId,
          agentId,
          createdAt,
        });
    }
  }
  return calls;
}

/** The same calls as plain counters, mapped before the clock starts (what a caller of recordModelUsageBatch would have). */
function toPlainInputs(calls: readonly ProviderUsageCall[], threshold: number): ModelUsageInput[] {
  return calls.map((c) => {
    const u = c.provider === "openai" ? usageFromOpenAI(c.usage, { serviceTier: c.serviceTier }) : c.provider === "anthropic" ? usageFromAnthropic(c.usage) : usageFromGemini(c.usage);
    const n = providerUsageToModelUsage(u, threshold);
    return {
      userId: c.userId,
      modelId: c.modelId,
      agentId: c.agentId,
      createdAt: c.createdAt,
      tokenInCount: n.tokenInCount,
      tokenInCachedContextCount: n.tokenInCachedContextCount,
      tokenInCacheWriteCount: n.tokenInCacheWriteCount,
      longContextTokenInCount: n.longContextTokenInCount,
      longContextTokenInCachedContextCount: n.longContextTokenInCachedContextCount,
      longContextTokenInCacheWriteCount: n.longContextTokenInCacheWriteCount,
      tokenOutCount: n.tokenOutCount,
      tokenOutReasoningCount: n.tokenOutReasoningCount,
      tokenOutAudioCount: n.tokenOutAudioCount,
      tokenOutImageCount: n.tokenOutImageCount,
      longContextTokenOutCount: n.longContextTokenOutCount,
      longContextTokenOutReasoningCount: n.longContextTokenOutReasoningCount,
      longContextTokenOutAudioCount: n.longContextTokenOutAudioCount,
      longContextTokenOutImageCount: n.longContextTokenOutImageCount,
      webSearchCount: u.webSearchCalls,
      serviceTier: serviceTierOf(u.provider, u.serviceTier),
    };
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const loadAverage = () => os.loadavg()[0].toFixed(2);

/** Every column of a row but its id: what makes two contenders' rows twins. */
const ROW_COLUMNS = [
  "user_id",
  "model_id",
  "agent_id",
  "connector_id",
  "created_at",
  "updated_at",
  ...MODEL_USAGE_ALL_COUNTERS.map(([, column]) => column),
  "service_tier",
  "regional_processing",
].join(", ");

async function main(): Promise<void> {
  const name = `ps_usage_bench_providers_${process.pid}`;
  await admin(`CREATE DATABASE "${name}"`);
  const db = await openDatabase({ url: urlFor(name), migrate: true });
  try {
    const modelIds: number[] = [];
    for (let i = 0; i < 6; i++) {
      const m = await db.prisma.psAiModel.create({ data: { userId: 1, name: `bench-${i}` } });
      await setModelPrice(db, m.id, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2, longContextTokenThreshold: 200_000 }, new Date("2026-01-01T00:00:00Z"));
      modelIds.push(m.id);
    }
    const agentIds: number[] = [];
    for (let i = 0; i < 50; i++) agentIds.push((await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id);
    const calls = makeCalls(modelIds, agentIds);
    const plain = toPlainInputs(calls, 200_000);
    // The contenders alternate batch by batch into the same table (which one goes first alternates
    // too), so both meet the same table size, cache state and machine load; each run starts from an
    // empty table after a CHECKPOINT, and the figure is the median over the runs.
    const times: Record<"plain" | "provider", number[]> = { plain: [], provider: [] };
    const loadBefore = loadAverage();
    for (let run = 0; run < RUNS; run++) {
      await db.prisma.$executeRawUnsafe("TRUNCATE ps_model_usage CASCADE");
      await db.prisma.$executeRawUnsafe("CHECKPOINT");
      const spent = { plain: 0, provider: 0 };
      for (let i = 0, k = 0; i < CALLS; i += BATCH, k++) {
        for (const contender of (k + run) % 2 === 0 ? (["plain", "provider"] as const) : (["provider", "plain"] as const)) {
          const started = performance.now();
          if (contender === "plain") await recordModelUsageBatch(db, plain.slice(i, i + BATCH));
          else await recordProviderUsageBatch(db, calls.slice(i, i + BATCH));
          spent[contender] += performance.now() - started;
        }
      }
      times.plain.push(spent.plain);
      times.provider.push(spent.provider);
      const [{ n }] = await db.prisma.$queryRawUnsafe<{ n: bigint }[]>("SELECT count(*) AS n FROM ps_model_usage");
      if (Number(n) !== 2 * CALLS) throw new Error(`the run stored ${n} rows, not ${2 * CALLS}`);
      if (run === 0) {
        // The same rows: every row the one contender wrote, the other wrote too (all but the id).
        const [{ unpaired }] = await db.prisma.$queryRawUnsafe<{ unpaired: bigint }[]>(
          `SELECT count(*) AS unpaired FROM (SELECT 1 FROM ps_model_usage GROUP BY ${ROW_COLUMNS} HAVING count(*) % 2 <> 0) x`,
        );
        if (Number(unpaired) !== 0) throw new Error(`${unpaired} rows of one contender have no twin from the other`);
      }
    }
    const loadAfter = loadAverage();
    const plainMs = median(times.plain);
    const providerMs = median(times.provider);
    const ratios = times.plain.map((p, run) => times.provider[run] / p);
    const lines = [
      `# Recording through recordProviderUsageBatch (${new Date().toISOString().slice(0, 16)}Z, PostgreSQL)`,
      "",
      `${CALLS.toLocaleString("en")} calls (OpenAI, Anthropic, Gemini usage objects in turn) in batches of ${BATCH.toLocaleString("en")}, ${RUNS} runs; in each the two contenders alternate batch by batch into the same table and write the same rows (checked). Load average (1 min) ${loadBefore} before, ${loadAfter} after, on ${os.cpus().length} cores.`,
      "",
      "| contender | seconds (median run) | calls/s |",
      "|---|---|---|",
      `| recordModelUsageBatch (counters mapped beforehand) | ${(plainMs / 1000).toFixed(2)} | ${Math.round(CALLS / (plainMs / 1000)).toLocaleString("en")} |`,
      `| recordProviderUsageBatch (provider usage objects) | ${(providerMs / 1000).toFixed(2)} | ${Math.round(CALLS / (providerMs / 1000)).toLocaleString("en")} |`,
      "",
      `Ratio provider / plain, median of the runs' ratios: **${median(ratios).toFixed(3)}x** (range ${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}; target under 1.10x).`,
      `Runs (ms): plain ${times.plain.map(Math.round).join(", ")}; provider ${times.provider.map(Math.round).join(", ")}.`,
      "",
    ];
    console.log(lines.join("\n"));
    fs.writeFileSync(path.join(PACKAGE_ROOT, "bench", "PROVIDERS.md"), lines.join("\n"));
  } finally {
    await db.close();
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
