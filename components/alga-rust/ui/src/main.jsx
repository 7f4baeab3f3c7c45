// The alga-rust sample's UI: the handler's records (kept in KV) in the UI kit's DataTable,
// with add and delete through the host page's bridge (Alga's `apiproxy`): the iframe holds no
// credential. The host's theme tokens (`--alga-*`) restyle the kit's components.
import { useCallback, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Button, Card, DataTable, Input, Text } from '@alga-psa/ui-kit';
import '@alga-psa/ui-kit/theme.css';
import { connect } from 'alga-iframe';

function Records({ bridge }) {
  const [records, setRecords] = useState([]);
  const [name, setName] = useState('');
  const [quantity, setQuantity] = useState('1');
  const [message, setMessage] = useState('');

  const load = useCallback(async () => {
    const answer = await bridge.callRoute('/records');
    setRecords(answer.json().records ?? []);
  }, [bridge]);

  useEffect(() => {
    load()
      .then(() => { document.body.dataset.state = 'ready'; })
      .catch((error) => {
        setMessage(`${error.code ?? 'error'}: ${error.message}`);
        document.body.dataset.state = 'failed';
      });
  }, [load]);

  const add = async () => {
    const answer = await bridge.callRoute('/records', {
      method: 'POST',
      body: JSON.stringify({ name, quantity: Number(quantity) }),
    });
    const data = answer.json();
    setMessage(data.record ? `added ${data.record.name}` : data.message ?? data.error);
    setName('');
    await load();
  };

  const remove = async (record) => {
    await bridge.callRoute(`/records/${encodeURIComponent(record.id)}`, { method: 'DELETE' });
    setMessage(`deleted ${record.name}`);
    await load();
  };

  const columns = [
    { key: 'name', header: 'Name', sortable: true },
    { key: 'quantity', header: 'Quantity', sortable: true },
    {
      key: 'id',
      header: 'Actions',
      render: (record) => (
        <Button variant="ghost" onClick={() => remove(record)} aria-label={`Delete ${record.name}`}>
          Delete
        </Button>
      ),
    },
  ];

  return (
    <Card style={{ padding: 16 }}>
      <Text as="h1" style={{ fontSize: 20, marginTop: 0 }}>Records</Text>
      {/* No <form>: the sandboxed iframe may not submit forms (no allow-forms). */}
      <div style={{ display: 'flex', gap: 8, marginBottom: 12 }}>
        <Input id="record-name" placeholder="Name" value={name} onChange={(e) => setName(e.target.value)} />
        <Input id="record-quantity" type="number" value={quantity} onChange={(e) => setQuantity(e.target.value)} />
        <Button id="record-add" type="button" onClick={add} disabled={!name.trim()}>Add</Button>
      </div>
      <div id="records">
        <DataTable columns={columns} data={records} paginate defaultPageSize={5} pageSizeOptions={[5, 10, 25]} />
      </div>
      <Text tone="muted" id="message">{message}</Text>
    </Card>
  );
}

const root = createRoot(document.getElementById('root'));
try {
  const bridge = await connect({ timeoutMs: 10000 });
  window.algaBridge = bridge;
  root.render(<Records bridge={bridge} />);
} catch (error) {
  document.body.textContent = `${error.code ?? 'error'}: ${error.message}`;
  document.body.dataset.state = 'failed';
}
