import { defineConfig } from "vite";

// `npm run build` (make web) writes the page into the queue service's package, where it is
// committed: a pip-installed labelgrid serves it without Node.
export default defineConfig({
  base: "./",
  build: {
    outDir: "../../queue_service/web/static",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
});
