//! Conversions shared by the three signals: `AnyValue`, attributes, resource, scope,
//! and the grouping of model records by resource and scope.

use crate::signal::{AnyValue, Attributes, KeyValue, Resource, Scope};
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
use opentelemetry_proto::tonic::resource::v1 as pr;
use std::sync::Arc;

pub(crate) fn any_from_proto(v: pc::AnyValue) -> AnyValue {
    match v.value {
        None => AnyValue::Empty,
        Some(PValue::StringValue(s)) => AnyValue::Str(s),
        Some(PValue::BoolValue(b)) => AnyValue::Bool(b),
        Some(PValue::IntValue(i)) => AnyValue::Int(i),
        Some(PValue::DoubleValue(d)) => AnyValue::Double(d),
        Some(PValue::BytesValue(b)) => AnyValue::Bytes(b),
        Some(PValue::ArrayValue(a)) => AnyValue::Array(a.values.into_iter().map(any_from_proto).collect()),
        Some(PValue::KvlistValue(kv)) => AnyValue::KvList(attrs_from_proto(kv.values)),
    }
}

pub(crate) fn any_to_proto(v: &AnyValue) -> pc::AnyValue {
    let value = match v {
        AnyValue::Empty => None,
        AnyValue::Str(s) => Some(PValue::StringValue(s.clone())),
        AnyValue::Bool(b) => Some(PValue::BoolValue(*b)),
        AnyValue::Int(i) => Some(PValue::IntValue(*i)),
        AnyValue::Double(d) => Some(PValue::DoubleValue(*d)),
        AnyValue::Bytes(b) => Some(PValue::BytesValue(b.clone())),
        AnyValue::Array(a) => Some(PValue::ArrayValue(pc::ArrayValue { values: a.iter().map(any_to_proto).collect() })),
        AnyValue::KvList(kv) => Some(PValue::KvlistValue(pc::KeyValueList { values: attrs_to_proto(kv) })),
    };
    pc::AnyValue { value }
}

pub(crate) fn attrs_from_proto(kvs: Vec<pc::KeyValue>) -> Attributes {
    kvs.into_iter()
        .map(|kv| KeyValue { key: kv.key, value: kv.value.map(any_from_proto).unwrap_or_default() })
        .collect()
}

pub(crate) fn attrs_to_proto(kvs: &[KeyValue]) -> Vec<pc::KeyValue> {
    kvs.iter()
        .map(|kv| pc::KeyValue {
            key: kv.key.clone(),
            // OTLP leaves `value` unset for an empty value; keep that rather than sending
            // an `AnyValue` with no variant.
            value: match kv.value {
                AnyValue::Empty => None,
                ref v => Some(any_to_proto(v)),
            },
        })
        .collect()
}

pub(crate) fn resource_from_proto(r: Option<pr::Resource>, schema_url: String) -> Resource {
    Resource { attributes: r.map(|r| attrs_from_proto(r.attributes)).unwrap_or_default(), schema_url }
}

pub(crate) fn resource_to_proto(r: &Resource) -> pr::Resource {
    pr::Resource { attributes: attrs_to_proto(&r.attributes), dropped_attributes_count: 0, entity_refs: Vec::new() }
}

pub(crate) fn scope_from_proto(s: Option<pc::InstrumentationScope>, schema_url: String) -> Scope {
    match s {
        Some(s) => Scope { name: s.name, version: s.version, attributes: attrs_from_proto(s.attributes), schema_url },
        None => Scope { schema_url, ..Scope::default() },
    }
}

pub(crate) fn scope_to_proto(s: &Scope) -> pc::InstrumentationScope {
    pc::InstrumentationScope {
        name: s.name.clone(),
        version: s.version.clone(),
        attributes: attrs_to_proto(&s.attributes),
        dropped_attributes_count: 0,
    }
}

fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// Items of one resource, split by scope, in first-seen order.
pub(crate) struct ResourceGroup<'a, T> {
    pub resource: &'a Arc<Resource>,
    pub scopes: Vec<(&'a Arc<Scope>, Vec<&'a T>)>,
}

/// Groups `items` by resource, then by scope (same `Arc` or equal value), keeping the
/// order of first appearance. Consecutive items from the same resource and scope (the
/// usual case) cost one pointer comparison; otherwise the groups seen so far are
/// searched, so the cost is O(items × distinct resources).
pub(crate) fn group_by_resource<'a, T>(
    items: &'a [T],
    key: impl Fn(&'a T) -> (&'a Arc<Resource>, &'a Arc<Scope>),
) -> Vec<ResourceGroup<'a, T>> {
    let mut out: Vec<ResourceGroup<'a, T>> = Vec::new();
    let mut last: Option<(usize, usize)> = None;
    for item in items {
        let (r, s) = key(item);
        if let Some((ri, si)) = last {
            let g = &mut out[ri];
            if Arc::ptr_eq(g.resource, r) && Arc::ptr_eq(g.scopes[si].0, s) {
                g.scopes[si].1.push(item);
                continue;
            }
        }
        let ri = match out.iter().position(|g| same(g.resource, r)) {
            Some(i) => i,
            None => {
                out.push(ResourceGroup { resource: r, scopes: Vec::new() });
                out.len() - 1
            }
        };
        let g = &mut out[ri];
        let si = match g.scopes.iter().position(|(sc, _)| same(sc, s)) {
            Some(i) => i,
            None => {
                g.scopes.push((s, Vec::new()));
                g.scopes.len() - 1
            }
        };
        g.scopes[si].1.push(item);
        last = Some((ri, si));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_value_round_trips() {
        let v = AnyValue::KvList(vec![
            KeyValue { key: "a".into(), value: AnyValue::Array(vec![AnyValue::Int(-3), AnyValue::Double(1.5)]) },
            KeyValue { key: "b".into(), value: AnyValue::Bytes(vec![0, 255]) },
            KeyValue { key: "c".into(), value: AnyValue::Empty },
            KeyValue { key: "d".into(), value: AnyValue::Bool(true) },
            KeyValue::string("e", "x"),
        ]);
        assert_eq!(any_from_proto(any_to_proto(&v)), v);
    }

    #[test]
    fn grouping_uses_pointer_then_equality() {
        let r1 =
            Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "a")], schema_url: String::new() });
        let r1_copy = Arc::new((*r1).clone());
        let r2 = Arc::new(Resource::default());
        let s = Arc::new(Scope::default());
        let s2 = Arc::new(Scope { name: "x".into(), ..Scope::default() });
        let items = [(r1.clone(), s.clone()), (r2.clone(), s.clone()), (r1_copy, s.clone()), (r1.clone(), s2)];
        let groups = group_by_resource(&items, |(r, s)| (r, s));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].scopes.len(), 2);
        assert_eq!(groups[0].scopes[0].1.len(), 2);
        assert_eq!(groups[1].scopes[0].1.len(), 1);
    }
}
