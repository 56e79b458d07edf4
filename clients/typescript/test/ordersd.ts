// Starts a real ordersd for a test: built from this repository with
// `go build`, on free loopback ports, with a data directory of its own,
// and stopped (SIGTERM) when the test is done.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface Ordersd {
  /** Base URL of the gRPC port (--grpc-addr). */
  grpcUrl: string;
  /** Base URL of the HTTP port (--http-addr): Connect, gRPC-Web, gRPC. */
  httpUrl: string;
  /** Stops ordersd (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data directory. */
  restart(): Promise<void>;
}

/** The repository root: the first directory upwards that holds go.mod. */
export function repoRoot(from: string = import.meta.dirname): string {
  let dir = from;
  while (!existsSync(join(dir, "go.mod"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no go.mod above ${from}`);
    dir = up;
  }
  return dir;
}

let built: string | undefined;

/** The ordersd binary: $ORDERSD_BIN, or built once per test process. */
function binary(): string {
  if (process.env.ORDERSD_BIN) return process.env.ORDERSD_BIN;
  if (built === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "ordersd-bin-"));
    built = join(dir, "ordersd");
    execFileSync("go", ["build", "-o", built, "./cmd/ordersd"], { cwd: repoRoot(), stdio: "inherit" });
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return built;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts ordersd with extra flags and waits until /readyz answers 200. */
export async function startOrdersd(...flags: string[]): Promise<Ordersd> {
  const bin = binary();
  const [grpcPort, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), "ordersd-data-"));
  const args = [
    "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`,
    "--metrics-addr", `127.0.0.1:${metricsPort}`, "--data-dir", dataDir,
    "--shutdown-delay", "0s", "--log-level", "warn", ...flags,
  ];
  // Only this test's settings: no ORDERSD_* variable of the caller's shell.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ORDERSD_")));
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    let stderr = "";
    const p = spawn(bin, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    proc = p;
    p.stderr?.on("data", (d) => (stderr += d));
    let gone = false;
    exited = new Promise((resolve) => p.once("exit", () => { gone = true; resolve(); }));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (gone) throw new Error(`ordersd exited before it was ready:\n${stderr}`);
      try {
        const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`ordersd not ready within 30s:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    proc?.kill("SIGTERM");
    await exited;
  };
  await start();
  return {
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    stop: async () => {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
    restart: async () => {
      await stop();
      await start();
    },
  };
}
