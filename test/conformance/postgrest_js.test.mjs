// @supabase/postgrest-js, a PostgREST client nobody on this project wrote,
// against the conformance fixture served as a second schema: every client
// method of its query, filter and transform builders — select with
// embedding and aggregates, the filters, order, range, count,
// single/maybeSingle, insert/upsert/update/delete with returning, rpc by
// POST and GET, csv, explain, rollback.  The answers expected are
// PostgREST 12's for the fixture's rows (fixture.sql).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { startConformance, token } from './helpers.mjs';
import { BASE } from '../integration/http_helpers.mjs';

let server;
let api; // the anonymous role, conformance_anon
let user; // a token of conformance_user
before(async () => {
  server = await startConformance({ VENTROS_HTTP_DB_AGGREGATES_ENABLED: 'true', VENTROS_HTTP_DB_PLAN_ENABLED: 'true' });
  api = new PostgrestClient(BASE, { schema: 'conformance' });
  user = new PostgrestClient(BASE, { schema: 'conformance', headers: { Authorization: `Bearer ${token('conformance_user')}` } });
});
after(async () => { await server?.stop(); });

// the data, or the error as a failure message
function ok({ data, error, status }, expectedStatus = 200) {
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(status, expectedStatus);
  return data;
}

test('select: columns, aliases, casts, embedding both ways, !inner, spreads', async () => {
  assert.deepEqual(ok(await api.from('boards').select('title, rank').order('id')),
    [{ title: 'alpha', rank: 3 }, { title: 'beta', rank: 1 }, { title: 'gamma', rank: 2 }]);
  assert.deepEqual(ok(await api.from('boards').select('name:title, rank::text').eq('id', 1)),
    [{ name: 'alpha', rank: '3' }]);
  const customers = ok(await api.from('customers').select('name, orders(id, status), profiles(bio)').order('id').limit(2));
  assert.deepEqual(customers, [
    { name: 'Ana', orders: [{ id: 10, status: 'open' }, { id: 11, status: 'shipped' }], profiles: { bio: 'likes tea' } },
    { name: 'Bruno', orders: [], profiles: null }, // order 12 is private: row-level security
  ]);
  const items = ok(await api.from('items').select('quantity, orders!inner(status), ...products(product:name)')
    .eq('orders.status', 'shipped'));
  assert.deepEqual(items, [{ quantity: 1, orders: { status: 'shipped' }, product: 'pot' }]);
  const tagged = ok(await api.from('products').select('name, tags(label)').eq('id', 2));
  assert.deepEqual(tagged, [{ name: 'cup', tags: [{ label: 'kitchen' }] }]);
});

test('select: aggregates, grouped by the other columns', async () => {
  const r = ok(await api.from('items').select('order_id, quantity.sum(), count()').order('order_id'));
  assert.deepEqual(r, [{ order_id: 10, sum: 3, count: 2 }, { order_id: 11, sum: 1, count: 1 }, { order_id: 12, sum: 5, count: 1 }]);
  const all = ok(await user.from('items').select('total:quantity.sum()'));
  assert.deepEqual(all, [{ total: 9 }]);
});

test('filters: eq neq gt gte lt lte like ilike is in not or match filter textSearch', async () => {
  const ids = async (q) => ok(await q.order('id')).map((b) => b.id);
  const boards = () => api.from('boards').select('id');
  assert.deepEqual(await ids(boards().eq('title', 'beta')), [2]);
  assert.deepEqual(await ids(boards().neq('title', 'beta')), [1, 3]);
  assert.deepEqual(await ids(boards().gt('rank', 1)), [1, 3]);
  assert.deepEqual(await ids(boards().gte('rank', 2)), [1, 3]);
  assert.deepEqual(await ids(boards().lt('rank', 2)), [2]);
  assert.deepEqual(await ids(boards().lte('rank', 2)), [2, 3]);
  assert.deepEqual(await ids(boards().like('title', '%mm%')), [3]);
  assert.deepEqual(await ids(boards().ilike('title', 'A%')), [1]);
  assert.deepEqual(await ids(boards().is('rank', null)), []);
  assert.deepEqual(await ids(boards().in('title', ['alpha', 'gamma'])), [1, 3]);
  assert.deepEqual(await ids(boards().not('title', 'eq', 'alpha')), [2, 3]);
  assert.deepEqual(await ids(boards().or('rank.eq.1,title.eq.gamma')), [2, 3]);
  assert.deepEqual(await ids(boards().match({ title: 'alpha', rank: 3 })), [1]);
  assert.deepEqual(await ids(boards().filter('rank', 'in', '(1,2)')), [2, 3]);
  assert.deepEqual(await ids(boards().textSearch('title', 'gamma')), [3]);
  // a filter on an embedded resource, and or= inside it
  const c = ok(await api.from('customers').select('name, addresses(city)').eq('id', 1)
    .or('city.eq.Porto', { referencedTable: 'addresses' }));
  assert.deepEqual(c, [{ name: 'Ana', addresses: [{ city: 'Porto' }] }]);
});

test('order, limit, range, and the order and limit of an embedded resource', async () => {
  assert.deepEqual(ok(await api.from('boards').select('title').order('rank', { ascending: false }).limit(2)),
    [{ title: 'alpha' }, { title: 'gamma' }]);
  assert.deepEqual(ok(await api.from('boards').select('title').order('id').range(1, 2)),
    [{ title: 'beta' }, { title: 'gamma' }]);
  const e = ok(await api.from('customers').select('name, addresses(city)').eq('id', 1)
    .order('city', { referencedTable: 'addresses', ascending: false }).limit(1, { referencedTable: 'addresses' }));
  assert.deepEqual(e, [{ name: 'Ana', addresses: [{ city: 'Porto' }] }]);
});

test('count: exact with rows, and head only', async () => {
  const r = await api.from('boards').select('id', { count: 'exact' }).order('id').range(0, 0);
  assert.equal(r.error, null);
  assert.equal(r.count, 3);
  assert.equal(r.status, 206);
  assert.deepEqual(r.data, [{ id: 1 }]);
  const h = await api.from('boards').select('*', { count: 'exact', head: true }).gte('rank', 2);
  assert.equal(h.error, null);
  assert.equal(h.count, 2);
  assert.equal(h.data, null);
});

test('single and maybeSingle', async () => {
  assert.deepEqual(ok(await api.from('labels').select('code, color').eq('code', 'bug').single()), { code: 'bug', color: 'red' });
  const many = await api.from('labels').select('code').single();
  assert.equal(many.status, 406);
  assert.equal(many.error.code, 'PGRST116');
  const none = await api.from('labels').select('code').eq('code', 'nothing').maybeSingle();
  assert.equal(none.error, null);
  assert.equal(none.data, null);
  assert.deepEqual(ok(await api.from('labels').select('code').eq('code', 'idea').maybeSingle()), { code: 'idea' });
});

test('insert, upsert, update, delete, with and without returning', async () => {
  const made = ok(await api.from('labels').insert({ code: 'new', color: 'blue' }).select(), 201);
  assert.deepEqual(made, [{ code: 'new', color: 'blue' }]);
  // an array is sent with columns=: a key an object leaves out is null, or its default with defaultToNull: false
  const nulls = await api.from('labels').insert([{ code: 'n1' }, { code: 'n2', color: 'black' }]);
  assert.equal(nulls.error?.code, '23502'); // color is NOT NULL
  const bulk = ok(await api.from('labels').insert([{ code: 'n1' }, { code: 'n2', color: 'black' }], { defaultToNull: false })
    .select('code, color'), 201);
  assert.deepEqual(bulk, [{ code: 'n1', color: 'grey' }, { code: 'n2', color: 'black' }]);
  const quiet = await api.from('ticks').insert({});
  assert.equal(quiet.error, null);
  assert.equal(quiet.status, 201);
  assert.equal(quiet.data, null);
  const merged = ok(await api.from('labels').upsert({ code: 'new', color: 'white' }).select(), 201);
  assert.deepEqual(merged, [{ code: 'new', color: 'white' }]);
  const kept = ok(await api.from('labels').upsert({ code: 'new', color: 'pink' }, { ignoreDuplicates: true }).select(), 201);
  assert.deepEqual(kept, []);
  const onConflict = ok(await api.from('loyalty_cards').upsert({ number: 'L-9', customer_id: 1, points: 99 },
    { onConflict: 'customer_id' }).select('number, points'), 201);
  assert.deepEqual(onConflict, [{ number: 'L-9', points: 99 }]); // the card of customer 1, merged
  const updated = ok(await api.from('labels').update({ color: 'navy' }).eq('code', 'n1').select());
  assert.deepEqual(updated, [{ code: 'n1', color: 'navy' }]);
  const deleted = ok(await api.from('labels').delete().in('code', ['n1', 'n2']).select('code').order('code'));
  assert.deepEqual(deleted, [{ code: 'n1' }, { code: 'n2' }]);
  const gone = await api.from('labels').delete().eq('code', 'new');
  assert.equal(gone.error, null);
  assert.equal(gone.status, 204);
  const counted = await api.from('boards').update({ archived: false }, { count: 'exact' }).gte('rank', 1);
  assert.equal(counted.error, null);
  assert.equal(counted.count, 3);
});

test('rpc by POST and by GET, with filters on its rows, head and count', async () => {
  assert.equal(ok(await api.rpc('sum_of', { a: 2, b: 3 })), 5);
  assert.equal(ok(await api.rpc('shout', { word: 'hey' }, { get: true })), 'HEY');
  assert.deepEqual(ok(await api.rpc('total', { v: [1, 2, 3] })), 6);
  assert.deepEqual(ok(await api.rpc('halves', { n: 7 }, { get: true })), { low: 3, high: 4 });
  const rows = ok(await api.rpc('boards_from', { first_id: 1 }).select('title').gte('rank', 2).order('title'));
  assert.deepEqual(rows, [{ title: 'alpha' }, { title: 'gamma' }]);
  const c = await api.rpc('boards_from', { first_id: 2 }, { count: 'exact', head: true, get: true });
  assert.equal(c.error, null);
  assert.equal(c.count, 2);
  const missing = await api.rpc('sum_of', { a: 1 });
  assert.equal(missing.status, 404);
  assert.equal(missing.error.code, 'PGRST202');
  const readOnly = await api.rpc('add_event', { kind: 'x' }, { get: true });
  assert.equal(readOnly.status, 405);
  assert.equal(readOnly.error.code, '25006');
});

test('csv, explain and rollback', async () => {
  const csv = ok(await api.from('labels').select('code, color').order('code').csv());
  assert.equal(csv, 'code,color\nbug,red\nidea,green');
  const plan = ok(await api.from('boards').select('title').eq('id', 1).explain({ format: 'json' }));
  assert.ok(Array.isArray(plan) && plan[0].Plan, JSON.stringify(plan));
  const text = ok(await api.from('boards').select('title').explain({ analyze: true }));
  assert.match(text, /Execution Time/);
  const rolled = ok(await api.from('labels').insert({ code: 'temp' }).select('code').rollback(), 201);
  assert.deepEqual(rolled, [{ code: 'temp' }]);
  assert.deepEqual(ok(await api.from('labels').select('code').eq('code', 'temp')), []);
});
