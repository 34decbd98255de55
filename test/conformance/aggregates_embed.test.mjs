// Aggregates beside embedded resources, as PostgREST 12 documents them
// (references/api/aggregate_functions, "The Case of Embedded Resources"):
// a to-many embedding beside aggregates groups the rows by its value (equal
// embedded arrays make one group), and a to-one spread's columns group the
// rows as if they were the parent's (select=amount.sum(),...customers(name)
// sums the amount per name).  On the fixture's shop (fixture.sql), with
// db-aggregates-enabled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, token, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance({ VENTROS_HTTP_DB_AGGREGATES_ENABLED: 'true' }); });
after(async () => { await server?.stop(); });

const get = (p) => http('GET', p, { headers: READ });
const user = (p) => http('GET', p, { headers: { ...READ, Authorization: `Bearer ${token('conformance_user')}` } });
// row-level security: the anonymous role sees no private order (Bruno's)
const ok = (r) => { assert.equal(r.status, 200, r.text); return r.json; };
const bySum = (a, b) => a.sum - b.sum;

test('a spread\'s columns group the rows beside aggregates', async () => {
  // items: two teas + five teas, one cup, one pot
  assert.deepEqual(ok(await get('/items?select=quantity.sum(),...products(name)&order=products(name)')), [
    { sum: 1, name: 'cup' },
    { sum: 1, name: 'pot' },
    { sum: 7, name: 'tea' },
  ]);
  assert.deepEqual(ok(await user('/orders?select=n:id.count(),...customers(name)&order=customers(name).desc')), [
    { n: 1, name: 'Bruno' },
    { n: 2, name: 'Ana' },
  ]);
  // no manager: a group of its own, null
  const staff = ok(await get('/staff?select=count(),...manager_id(boss:name)'));
  assert.deepEqual(staff.sort((a, b) => a.count - b.count), [{ count: 1, boss: null }, { count: 2, boss: 'Boss' }]);
});

test('a to-many embedding beside aggregates groups by its value', async () => {
  // cup and pot are both tagged kitchen: one group
  assert.deepEqual(ok(await get('/products?select=price.sum(),tags(label)')).sort(bySum), [
    { sum: 5, tags: [{ label: 'drink' }] },
    { sum: 42, tags: [{ label: 'kitchen' }] },
  ]);
  // anonymous: Bruno's order is private, Caio has none: both []
  const customers = ok(await get('/customers?select=count(),orders(status)&orders.order=id'));
  assert.deepEqual(customers.sort((a, b) => a.count - b.count), [
    { count: 1, orders: [{ status: 'open' }, { status: 'shipped' }] },
    { count: 2, orders: [] },
  ]);
  // a computed relationship too
  const big = ok(await get('/customers?select=count(),big_orders(id)'));
  assert.deepEqual(big.sort((a, b) => a.count - b.count), [{ count: 1, big_orders: [{ id: 11 }] }, { count: 2, big_orders: [] }]);
});
