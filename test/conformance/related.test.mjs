// Reads across relationships beyond plain embedding, as PostgREST 12
// documents them (references/api/resource_embedding, references/api/
// ordering, references/errors, references/api/openapi):
// * ordering the parents by a column of a to-one embedding,
//   order=rel(col).desc.nullsfirst, at any level; a to-many one is 400
//   PGRST118, one not embedded 400 PGRST108;
// * spreading a to-many relationship is 400 PGRST119 in PostgREST 12
//   (version 13 spreads it into arrays); spreads at any level;
// * rel=is.null / rel=not.is.null on an embedded resource (anti-joins),
//   any other operator 400 PGRST120;
// * the OpenAPI document notes primary and foreign keys on the columns;
// * Prefer: count=estimated answers the exact count, Content-Range as
//   PostgREST's.
// On the fixture's shop (fixture.sql).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, token, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const get = (p, h = {}) => http('GET', p, { headers: { ...READ, ...h } });
const user = (p) => get(p, { Authorization: `Bearer ${token('conformance_user')}` });
const ok = (r) => { assert.equal(r.status, 200, r.text); return r.json; };

test('order=rel(col): parents ordered by a many-to-one embedding\'s column, by name or alias', async () => {
  // shipping cities: 10 Porto, 11 Lisbon, 12 Recife
  assert.deepEqual(ok(await user('/orders?select=id,addresses!shipping(city)&order=addresses(city)')), [
    { id: 11, addresses: { city: 'Lisbon' } },
    { id: 10, addresses: { city: 'Porto' } },
    { id: 12, addresses: { city: 'Recife' } },
  ]);
  assert.deepEqual(ok(await user('/orders?select=id,ship:addresses!shipping(city)&order=ship(city).desc')).map((o) => o.id),
    [12, 10, 11]);
  // a tie broken by the next term
  assert.deepEqual(ok(await user('/orders?select=id,customers(name)&order=customers(name).desc,id.desc')).map((o) => o.id),
    [12, 11, 10]);
});

test('order=rel(col) with nulls first or last; a parent without its row sorts as null', async () => {
  // Boss has no manager
  assert.deepEqual(ok(await get('/staff?select=name,manager_id(name)&order=manager_id(name).desc.nullslast,name')), [
    { name: 'Dana', manager_id: { name: 'Boss' } },
    { name: 'Eli', manager_id: { name: 'Boss' } },
    { name: 'Boss', manager_id: null },
  ]);
  assert.deepEqual(ok(await get('/staff?select=name,manager_id(name)&order=manager_id(name).asc.nullsfirst,name')).map((s) => s.name),
    ['Boss', 'Dana', 'Eli']);
  // one-to-one: Caio has no loyalty card
  assert.deepEqual(ok(await get('/customers?select=name,loyalty_cards(points)&order=loyalty_cards(points).desc.nullslast')), [
    { name: 'Bruno', loyalty_cards: { points: 20 } },
    { name: 'Ana', loyalty_cards: { points: 10 } },
    { name: 'Caio', loyalty_cards: null },
  ]);
  assert.deepEqual(ok(await get('/customers?select=name,loyalty_cards(points)&order=loyalty_cards(points).desc')).map((c) => c.name),
    ['Caio', 'Bruno', 'Ana']);
});

test('order=rel(col) inside an embedded resource, and on a computed to-one relationship', async () => {
  assert.deepEqual(ok(await user('/customers?select=name,orders(id,addresses!shipping(city))&id=eq.1&orders.order=addresses(city)')), [
    { name: 'Ana', orders: [{ id: 11, addresses: { city: 'Lisbon' } }, { id: 10, addresses: { city: 'Porto' } }] },
  ]);
  // first items: order 10 two teas, order 11 one pot
  assert.deepEqual(ok(await get('/orders?select=id,first_item(quantity)&order=first_item(quantity)')), [
    { id: 11, first_item: { quantity: 1 } },
    { id: 10, first_item: { quantity: 2 } },
  ]);
  // a spread's relationship orders too
  assert.deepEqual(ok(await user('/orders?select=id,...customers(customer:name)&order=customers(name).desc,id')), [
    { id: 12, customer: 'Bruno' },
    { id: 10, customer: 'Ana' },
    { id: 11, customer: 'Ana' },
  ]);
});

test('order=rel(col) on a to-many embedding is 400 PGRST118; on one not embedded 400 PGRST108', async () => {
  const many = await get('/customers?select=name,orders(id)&order=orders(id)');
  assert.equal(many.status, 400, many.text);
  assert.deepEqual(many.json, {
    code: 'PGRST118',
    message: "A related order on 'orders' is not possible",
    details: "'customers' and 'orders' do not form a many-to-one or one-to-one relationship",
    hint: null,
  });
  const absent = await get('/orders?select=id&order=customers(name)');
  assert.equal(absent.status, 400, absent.text);
  assert.deepEqual(absent.json, {
    code: 'PGRST108',
    message: "'customers' is not an embedded resource in this request",
    details: null,
    hint: "Verify that 'customers' is included in the 'select' query parameter.",
  });
  assert.equal((await get('/orders?select=id,customers(name)&order=customers(nope)')).json.code, '42703');
});

test('spreading a to-many relationship is 400 PGRST119, as PostgREST 12', async () => {
  for (const [p, parent, target] of [
    ['/customers?select=name,...orders(id)', 'customers', 'orders'],
    ['/products?select=name,...tags(label)', 'products', 'tags'],
    ['/customers?select=name,...big_orders(id)', 'customers', 'big_orders'],
  ]) {
    const r = await get(p);
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.json, {
      code: 'PGRST119',
      message: `A spread operation on '${target}' is not possible`,
      details: `'${parent}' and '${target}' do not form a many-to-one or one-to-one relationship`,
      hint: null,
    });
  }
});

test('spreads at any level: inside an embedding, inside a spread, beside !inner', async () => {
  assert.deepEqual(ok(await get('/items?select=quantity,orders(id,...customers(customer:name))&order_id=eq.11')), [
    { quantity: 1, orders: { id: 11, customer: 'Ana' } },
  ]);
  assert.deepEqual(ok(await user('/customers?select=name,orders(id,...addresses!shipping(city))&id=eq.1&orders.order=id')), [
    { name: 'Ana', orders: [{ id: 10, city: 'Porto' }, { id: 11, city: 'Lisbon' }] },
  ]);
  assert.deepEqual(ok(await get('/items?select=quantity,...orders(order_id:id,...customers(customer:name))&order_id=eq.11')), [
    { quantity: 1, order_id: 11, customer: 'Ana' },
  ]);
  // the embedding's filters narrow the spread row: a parent without it has nulls
  assert.deepEqual(ok(await user('/customers?select=name,orders(id,...addresses!shipping(city))&id=eq.1&orders.order=id&orders.addresses.city=eq.Porto')), [
    { name: 'Ana', orders: [{ id: 10, city: 'Porto' }, { id: 11, city: null }] },
  ]);
  // a to-many spread below an embedding is PostgREST 12's PGRST119 too
  const r = await get('/orders?select=id,customers(name,...orders(id))');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, 'PGRST119');
  assert.equal(r.json.details, "'customers' and 'orders' do not form a many-to-one or one-to-one relationship");
});

test('rel=not.is.null keeps parents with an embedded row, rel=is.null those without', async () => {
  // anonymous: Bruno's one order is private
  assert.deepEqual(ok(await get('/customers?select=name,orders(id)&orders=not.is.null&order=id&orders.order=id')), [
    { name: 'Ana', orders: [{ id: 10 }, { id: 11 }] },
  ]);
  assert.deepEqual(ok(await get('/customers?select=name,orders(id)&orders=is.null&order=id')), [
    { name: 'Bruno', orders: [] },
    { name: 'Caio', orders: [] },
  ]);
  // with the embedding's filters, and an alias
  assert.deepEqual(ok(await user('/customers?select=name,o:orders(id)&o.status=eq.shipped&o=not.is.null')), [
    { name: 'Ana', o: [{ id: 11 }] },
  ]);
  assert.deepEqual(ok(await get('/customers?select=name,loyalty_cards(number)&loyalty_cards=is.null')), [
    { name: 'Caio', loyalty_cards: null },
  ]);
  // below the top: the embedded customer is kept only with(out) a profile
  assert.deepEqual(ok(await get('/orders?select=id,customers(name,profiles(bio))&customers.profiles=is.null&order=id')), [
    { id: 10, customers: null },
    { id: 11, customers: null },
  ]);
  assert.deepEqual(ok(await get('/orders?select=id,customers(name,profiles(bio))&customers.profiles=not.is.null&id=eq.10')), [
    { id: 10, customers: { name: 'Ana', profiles: { bio: 'likes tea' } } },
  ]);
  const bad = await get('/customers?select=name,orders(id)&orders=eq.1');
  assert.equal(bad.status, 400, bad.text);
  assert.deepEqual(bad.json, {
    code: 'PGRST120',
    message: "Bad operator on the 'orders' embedded resource",
    details: 'Only is null or not is null filters are allowed on embedded resources',
    hint: null,
  });
});

test('OpenAPI: columns note their primary and foreign keys, after their comment', async () => {
  const r = await get('/');
  assert.equal(r.status, 200, r.text);
  const props = (rel) => r.json.components.schemas[rel].properties;
  assert.equal(props('orders').id.description, 'Note:\nThis is a Primary Key.<pk/>');
  assert.equal(props('orders').customer_id.description,
    "Note:\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>");
  assert.equal(props('orders').billing_address_id.description,
    "Note:\nThis is a Foreign Key to `addresses.id`.<fk table='addresses' column='id'/>");
  assert.equal(props('orders').status.description, undefined);
  assert.equal(props('profiles').customer_id.description,
    "Note:\nThis is a Primary Key.<pk/>\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>");
  // a view's column takes the key of the table column it is
  assert.equal(props('order_summaries').buyer.description,
    "Note:\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>");
  // and its primary key by its lineage, renamed
  assert.equal(props('order_summaries').order_no.description, 'Note:\nThis is a Primary Key.<pk/>');
  assert.equal(props('order_summaries').shouted.description, undefined);
  // a key of two columns is no column's
  assert.equal(props('items').order_id.description,
    "Note:\nThis is a Primary Key.<pk/>\nThis is a Foreign Key to `orders.id`.<fk table='orders' column='id'/>");
  // a comment comes first
  assert.equal(props('addresses').customer_id.description,
    "who lives there\n\nNote:\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>");
  assert.equal(props('addresses').city.description, 'where, by its usual name');
});

test('Prefer: count=estimated answers the exact count, with PostgREST\'s Content-Range', async () => {
  const r = await get('/customers?select=name&limit=2', { Prefer: 'count=estimated' });
  assert.equal(r.status, 206, r.text);
  assert.equal(r.headers.get('content-range'), '0-1/3');
  const all = await get('/customers?select=name', { Prefer: 'count=estimated' });
  assert.equal(all.status, 200, all.text);
  assert.equal(all.headers.get('content-range'), '0-2/3');
  const none = await get('/customers?select=name&name=eq.Nobody', { Prefer: 'count=estimated' });
  assert.equal(none.headers.get('content-range'), '*/0');
});
