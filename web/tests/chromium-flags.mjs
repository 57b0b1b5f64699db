// Chromium flags for headless WebGPU on a machine without a GPU, shared by the e2e test
// (web/tests/e2e.mjs) and the browser peers benchmark (bench/ort-web/run.mjs). No dependencies, so
// either can import it with its own node_modules. (webdriver.json, for wasm-bindgen-test, repeats them.)

// Dawn on SwiftShader, a CPU Vulkan; `--enable-unsafe-webgpu` is what gives an adapter at all.
export const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--disable-vulkan-surface",
  "--use-angle=swiftshader",
];

// The machine's network is closed: without these Chromium stalls on background connections.
export const QUIET_FLAGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-default-apps",
  "--disable-extensions",
];
