// Bundles src/main.ts into ../assets/console.js with the esbuild pinned in
// package-lock.json. The output depends only on the sources and that
// version (no timestamps, no absolute paths), so CI can rebuild it and
// check that the committed file is the same.
import { build } from "esbuild";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// The generated client in clients/typescript imports @bufbuild/protobuf:
// resolve it (and connect) from this package's node_modules, so the bundle
// holds one copy whether or not clients/typescript has its own installed.
const oneCopy = {
  name: "one-copy",
  setup(b) {
    b.onResolve({ filter: /^@(bufbuild|connectrpc)\// }, (args) => {
      if (args.pluginData === "one-copy") return undefined;
      return b.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: "one-copy" });
    });
  },
};

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  outfile: "../assets/console.js",
  bundle: true,
  format: "iife",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  metafile: true,
  plugins: [oneCopy],
  logLevel: "warning",
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`../assets/console.js: ${bytes} bytes`);
