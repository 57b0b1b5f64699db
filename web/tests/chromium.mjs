// Headless Chromium with WebGPU on a machine without a GPU: Dawn on SwiftShader (a CPU Vulkan).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--disable-vulkan-surface",
];

// The machine's network is closed: without these Chromium stalls on background connections.
export const QUIET_FLAGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), "zeroprune-chromium-"));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...WEBGPU_FLAGS, ...QUIET_FLAGS],
    viewport: { width: 1280, height: 1100 },
  });
}
