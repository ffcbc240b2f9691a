#!/usr/bin/env node
// The `redpacket` command; the code is compiled to ../dist by `tsc --build` (run by npm ci / npm start).
import '../dist/main.js';
