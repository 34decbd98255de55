// Aggregate functions in select= as PostgREST 12 documents them (references/
// api/aggregate_functions): avg() count() max() min() sum() appended to a
// column, count() alone, renames and casts before and after, the automatic
// GROUP BY of the other selected columns, aggregates inside embedded
// resources; off unless db-aggregates-enabled (VENTROS_HTTP_DB_AGGREGATES_ENABLED).
// On the fixture's shop (fixture.sql), under the caller's row-level security.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, token, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance({ VENTROS_HTTP_DB_AGGREGATES_ENABLED: 'true' }); });
after(async () => { await server?.stop(); });

const get = (p) => http('GET', p, { headers: READ });
const user = (p) => http('GET', p, { headers: { ...READ, Authorization: `Bearer ${token('conformance_user')}` } });
const ok = (r) => { assert.equal(r.status, 200, r.text); return r.json; };

test('an aggregate of a column answers one row named after the function', async () => {
  assert.deepEqual(ok(await get('/items?select=quantity.sum()')), [{ sum: 9 }]);
  assert.deepEqual(ok(await get('/products?select=price.min(),price.max()')), [{ min: 5, max: 30 }]);
  assert.deepEqual(ok(await get('/items?select=count()')), [{ count: 4 }]);
  assert.deepEqual(ok(await get('/items?select=quantity.sum()&status=eq.ok')), [{ sum: 8 }]);
});

test('renames, and casts of the column or of the result', async () => {
  assert.deepEqual(ok(await get('/products?select=total:price.sum(),mean:price.avg()::int,top:price::text.max()')),
    [{ total: 47, mean: 16, top: '5' }]);
});

test('the other selected columns group the rows', async () => {
  assert.deepEqual(ok(await get('/items?select=order_id,quantity.sum(),count()&order=order_id')), [
    { order_id: 10, sum: 3, count: 2 },
    { order_id: 11, sum: 1, count: 1 },
    { order_id: 12, sum: 5, count: 1 },
  ]);
  assert.deepEqual(ok(await get('/tags?select=*,count()&order=id')), [
    { id: 1, label: 'drink', count: 1 },
    { id: 2, label: 'kitchen', count: 1 },
  ]);
});

test('aggregates inside embedded resources, grouped there, under row-level security', async () => {
  assert.deepEqual(ok(await user('/customers?select=name,orders(id.count())&order=id')), [
    { name: 'Ana', orders: [{ count: 2 }] },
    { name: 'Bruno', orders: [{ count: 1 }] },
    { name: 'Caio', orders: [{ count: 0 }] },
  ]);
  assert.deepEqual(ok(await get('/customers?select=name,orders(id.count())&id=eq.2')), [{ name: 'Bruno', orders: [{ count: 0 }] }]);
  assert.deepEqual(ok(await get('/orders?select=id,items(status,quantity.sum())&id=eq.10&items.order=status')),
    [{ id: 10, items: [{ status: 'back', sum: 1 }, { status: 'ok', sum: 2 }] }]);
});

test('a to-one embedding beside aggregates groups by the row it embeds', async () => {
  assert.deepEqual(ok(await user('/orders?select=id.count(),customers(name)&order=customer_id')), [
    { count: 2, customers: { name: 'Ana' } },
    { count: 1, customers: { name: 'Bruno' } },
  ]);
  assert.deepEqual(ok(await get('/items?select=quantity.sum(),products(name)&order=product_id')), [
    { sum: 7, products: { name: 'tea' } },
    { sum: 1, products: { name: 'cup' } },
    { sum: 1, products: { name: 'pot' } },
  ]);
});

test('not yet: aggregates inside a spread (PostgREST hoists them to the parent) answer 400', async () => {
  // a to-many embedding or a spread beside aggregates groups by it: aggregates_embed.test.mjs
  const r = await get('/orders?select=id,...customers(id.count())');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, 'PGRST100');
});
