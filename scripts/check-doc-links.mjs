#!/usr/bin/env node
// Checks the relative links of README.md and docs/*.md: every target file must
// exist, and a #fragment must name a heading of its page (GitHub's anchor rule:
// lower case, punctuation other than - and _ dropped, spaces to hyphens, -1, -2
// for repeated headings).  Prints each broken link; exits 1 when there is one.
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const pages = ['README.md', ...readdirSync(join(root, 'docs'))
	.filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];

// The text outside fenced code blocks, and inline code spans blanked.
function prose(text) {
	let fenced = false;
	return text.split('\n').map((line) => {
		if (/^\s*(```|~~~)/.test(line)) { fenced = !fenced; return ''; }
		return fenced ? '' : line.replace(/`[^`]*`/g, (m) => (m.includes('](') ? '' : m));
	});
}

function anchors(file) {
	const seen = new Map();
	const out = new Set();
	for (const line of prose(readFileSync(file, 'utf8'))) {
		const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
		if (!m) continue;
		const slug = m[1].toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
		const n = seen.get(slug) ?? 0;
		seen.set(slug, n + 1);
		out.add(n === 0 ? slug : `${slug}-${n}`);
	}
	return out;
}

let broken = 0;
let checked = 0;
for (const page of pages) {
	const lines = prose(readFileSync(join(root, page), 'utf8'));
	lines.forEach((line, i) => {
		for (const m of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
			const target = m[1];
			if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;	// http:, mailto:
			checked++;
			const [path, frag] = target.split('#');
			const file = path === '' ? join(root, page) : resolve(dirname(join(root, page)), path);
			let why = null;
			if (!existsSync(file)) why = 'no such file';
			else if (frag !== undefined && file.endsWith('.md') && !anchors(file).has(frag))
				why = 'no such heading';
			if (why) { broken++; console.log(`${page}:${i + 1}: ${target}: ${why}`); }
		}
	});
}
console.log(`${checked} relative links in ${pages.length} pages, ${broken} broken`);
process.exit(broken ? 1 : 0);
