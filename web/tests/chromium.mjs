// Headless Chromium with WebGPU on a machine without a GPU: Dawn on SwiftShader (a CPU Vulkan).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { QUIET_FLAGS, WEBGPU_FLAGS } from "./chromium-flags.mjs";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), "zeroprune-chromium-"));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...WEBGPU_FLAGS, ...QUIET_FLAGS],
    viewport: { width: 1280, height: 1100 },
  });
}
