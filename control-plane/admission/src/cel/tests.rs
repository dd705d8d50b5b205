//! Tests of the CEL environment: each library function with kube's examples and errors,
//! compile errors, cost limits, lazy variables and the authorizer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn eval_on(expr: &str, object: &Value) -> Result<Value, String> {
    let request = json!({"operation": "CREATE", "namespace": "default", "name": "web"});
    let program = compile(expr).map_err(|e| e.to_string())?;
    let mut activation = Activation::new(&request);
    activation.object = Some(object);
    program.eval(&activation, &mut Budget::per_binding()).map_err(|e| e.to_string())
}

fn eval(expr: &str) -> Result<Value, String> {
    eval_on(expr, &json!({}))
}

/// Each case: expression, expected result (`Ok` value or `Err` message).
fn check(cases: &[(&str, Result<Value, &str>)]) {
    for (expr, want) in cases {
        let got = eval(expr);
        match want {
            Ok(v) => assert_eq!(got.as_ref(), Ok(v), "{expr}"),
            Err(e) => assert_eq!(got.as_ref().map_err(String::as_str), Err(*e), "{expr}"),
        }
    }
}

#[test]
fn lists_library_should_follow_kube() {
    check(&[
        ("[1, 2, 3].isSorted()", Ok(json!(true))),
        ("['a', 'b', 'b', 'c'].isSorted()", Ok(json!(true))),
        ("[2.0, 1.0].isSorted()", Ok(json!(false))),
        ("[].isSorted()", Ok(json!(true))),
        ("[1, 3].sum()", Ok(json!(4))),
        ("[1.0, 3.0].sum()", Ok(json!(4.0))),
        ("[].sum()", Ok(json!(0))),
        ("[1, 3].min()", Ok(json!(1))),
        ("[1, 3].max()", Ok(json!(3))),
        ("['b', 'a'].min()", Ok(json!("a"))),
        ("[].min()", Err("min called on empty list")),
        ("[].max()", Err("max called on empty list")),
        ("[1, 2, 2, 3].indexOf(2)", Ok(json!(1))),
        ("['a', 'b', 'b', 'c'].lastIndexOf('b')", Ok(json!(2))),
        ("[1.0].indexOf(1.1)", Ok(json!(-1))),
        ("[].indexOf('string')", Ok(json!(-1))),
    ]);
}

#[test]
fn regex_library_should_find_matches() {
    check(&[
        ("'abc 123'.find('[0-9]+')", Ok(json!("123"))),
        ("'abc 123'.find('xyz')", Ok(json!(""))),
        ("'123 abc 456'.findAll('[0-9]+')", Ok(json!(["123", "456"]))),
        ("'123 abc 456'.findAll('[0-9]+', 1)", Ok(json!(["123"]))),
        ("'123 abc 456'.findAll('xyz')", Ok(json!([]))),
        ("'abc'.matches('^a.c$')", Ok(json!(true))),
    ]);
    let err = eval("'abc'.find('[')").unwrap_err();
    assert!(err.starts_with("Illegal regex: "), "{err}");
}

#[test]
fn url_library_should_parse_as_go_does() {
    check(&[
        ("isURL('https://user:pass@example.com:80/path?query=val#fragment')", Ok(json!(true))),
        ("isURL('/absolute-path')", Ok(json!(true))),
        ("isURL('https://a:b:c/')", Ok(json!(false))),
        ("isURL('../relative-path')", Ok(json!(false))),
        // A bad escape that ends inside a multibyte character (a panic once).
        ("isURL('https://h/%aé')", Ok(json!(false))),
        ("isURL('https://h/%é')", Ok(json!(false))),
        ("url('/path').getScheme()", Ok(json!(""))),
        ("url('https://example.com/').getScheme()", Ok(json!("https"))),
        ("url('https://example.com:80/').getHost()", Ok(json!("example.com:80"))),
        ("url('https://[::1]:80/').getHost()", Ok(json!("[::1]:80"))),
        ("url('https://example.com:80/').getHostname()", Ok(json!("example.com"))),
        ("url('https://[::1]:80/').getHostname()", Ok(json!("::1"))),
        ("url('https://127.0.0.1:80/').getHostname()", Ok(json!("127.0.0.1"))),
        ("url('https://example.com:80/').getPort()", Ok(json!("80"))),
        ("url('https://example.com/').getPort()", Ok(json!(""))),
        ("url('https://example.com/path').getEscapedPath()", Ok(json!("/path"))),
        (
            "url('https://example.com/path with spaces/').getEscapedPath()",
            Ok(json!("/path%20with%20spaces/")),
        ),
        ("url('https://example.com').getEscapedPath()", Ok(json!(""))),
        (
            "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery()",
            Ok(json!({"k1": ["a"], "k2": ["b", "c"]})),
        ),
        (
            "url('https://example.com/path?key with spaces=value with spaces').getQuery()",
            Ok(json!({"key with spaces": ["value with spaces"]})),
        ),
        ("url('https://example.com/path?').getQuery()", Ok(json!({}))),
        (
            "url('../relative-path')",
            Err(
                "URL parse error during conversion from string: parse \"../relative-path\": invalid URI for request",
            ),
        ),
        (
            "url('https://a:b:c/')",
            Err(
                "URL parse error during conversion from string: parse \"https://a:b:c/\": invalid port \":c\" after host",
            ),
        ),
    ]);
}

#[test]
fn quantity_library_should_follow_kube() {
    check(&[
        ("isQuantity('1.3G')", Ok(json!(true))),
        ("isQuantity('1.3Gi')", Ok(json!(true))),
        ("isQuantity('1,3G')", Ok(json!(false))),
        ("isQuantity('10000k')", Ok(json!(true))),
        ("isQuantity('200K')", Ok(json!(false))),
        ("isQuantity('Three')", Ok(json!(false))),
        ("isQuantity('Mi')", Ok(json!(false))),
        ("quantity('50000000G').isInteger()", Ok(json!(true))),
        ("quantity('50k').isInteger()", Ok(json!(true))),
        ("quantity('1.5').isInteger()", Ok(json!(false))),
        // kube's example is 9999999999999999999999999999999999999G, beyond what Skiff's
        // quantities hold; 10E is past int64 too.
        ("quantity('10E').isInteger()", Ok(json!(false))),
        ("quantity('10E').asInteger()", Err("cannot convert value to integer")),
        ("quantity('50k').asInteger() == 50000", Ok(json!(true))),
        ("quantity('50k').sub(20000).asApproximateFloat() == 30000.0", Ok(json!(true))),
        ("quantity('50k').add(quantity('20k')) == quantity('70k')", Ok(json!(true))),
        ("quantity('50k').add(20) == quantity('50020')", Ok(json!(true))),
        ("quantity('50k').sub(quantity('20k')) == quantity('30k')", Ok(json!(true))),
        (
            "quantity('50k').add(20).sub(quantity('100k')).sub(-50000) == quantity('20')",
            Ok(json!(true)),
        ),
        ("quantity('200M').compareTo(quantity('0.2G'))", Ok(json!(0))),
        ("quantity('50M').compareTo(quantity('50Mi'))", Ok(json!(-1))),
        ("quantity('50Mi').compareTo(quantity('50M'))", Ok(json!(1))),
        ("quantity('150Mi').isGreaterThan(quantity('100Mi'))", Ok(json!(true))),
        ("quantity('50Mi').isGreaterThan(quantity('100Mi'))", Ok(json!(false))),
        ("quantity('50M').isLessThan(quantity('100M'))", Ok(json!(true))),
        ("quantity('-5').sign()", Ok(json!(-1))),
        ("sign(quantity('0'))", Ok(json!(0))),
        ("quantity('1.5Gi')", Ok(json!("1536Mi"))),
        (
            "quantity('200K')",
            Err(
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
        ),
    ]);
}

#[test]
fn ip_library_should_follow_kube() {
    check(&[
        ("isIP('127.0.0.1')", Ok(json!(true))),
        ("isIP('::1')", Ok(json!(true))),
        ("isIP('127.0.0.256')", Ok(json!(false))),
        ("isIP(':::1')", Ok(json!(false))),
        ("isIP('127.0.0.01')", Ok(json!(false))),
        ("isIP('fe80::1%eth0')", Ok(json!(false))),
        ("ip.isCanonical('127.0.0.1')", Ok(json!(true))),
        ("ip.isCanonical('2001:db8::abcd')", Ok(json!(true))),
        ("ip.isCanonical('2001:DB8::ABCD')", Ok(json!(false))),
        ("ip.isCanonical('2001:db8::0:0:0:abcd')", Ok(json!(false))),
        ("ip('127.0.0.1').family()", Ok(json!(4))),
        ("ip('::1').family()", Ok(json!(6))),
        ("ip('0.0.0.0').isUnspecified()", Ok(json!(true))),
        ("ip('::').isUnspecified()", Ok(json!(true))),
        ("ip('127.0.0.1').isLoopback()", Ok(json!(true))),
        ("ip('2001:db8::abcd').isLoopback()", Ok(json!(false))),
        ("ip('224.0.0.1').isLinkLocalMulticast()", Ok(json!(true))),
        ("ip('224.0.1.1').isLinkLocalMulticast()", Ok(json!(false))),
        ("ip('ff02::1').isLinkLocalMulticast()", Ok(json!(true))),
        ("ip('fd00::1').isLinkLocalMulticast()", Ok(json!(false))),
        ("ip('169.254.169.254').isLinkLocalUnicast()", Ok(json!(true))),
        ("ip('fe80::1').isLinkLocalUnicast()", Ok(json!(true))),
        ("ip('fd80::1').isLinkLocalUnicast()", Ok(json!(false))),
        ("ip('192.168.0.1').isGlobalUnicast()", Ok(json!(true))),
        ("ip('255.255.255.255').isGlobalUnicast()", Ok(json!(false))),
        ("ip('2001:db8::abcd').isGlobalUnicast()", Ok(json!(true))),
        ("ip('ff00::1').isGlobalUnicast()", Ok(json!(false))),
        ("string(ip('::1'))", Ok(json!("::1"))),
        ("ip('10.0.0.1') == ip('10.0.0.1')", Ok(json!(true))),
        (
            "ip('127.0.0.256')",
            Err(
                "IP Address \"127.0.0.256\" parse error during conversion from string: ParseAddr(\"127.0.0.256\"): IPv4 field has value >255",
            ),
        ),
        ("ip('::ffff:1.2.3.4')", Err("IPv4-mapped IPv6 address \"::ffff:1.2.3.4\" is not allowed")),
        ("ip('fe80::1%eth0')", Err("IP address \"fe80::1%eth0\" with zone value is not allowed")),
    ]);
}

#[test]
fn cidr_library_should_follow_kube() {
    check(&[
        ("isCIDR('192.168.0.0/16')", Ok(json!(true))),
        ("isCIDR('::1/128')", Ok(json!(true))),
        ("isCIDR('192.168.0.0/33')", Ok(json!(false))),
        ("isCIDR('::1/129')", Ok(json!(false))),
        ("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", Ok(json!(true))),
        ("cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))", Ok(json!(false))),
        ("cidr('192.168.0.0/24').containsIP('192.168.0.1')", Ok(json!(true))),
        ("cidr('192.168.0.0/16').containsCIDR(cidr('192.168.10.0/24'))", Ok(json!(true))),
        ("cidr('192.168.1.0/24').containsCIDR(cidr('192.168.2.0/24'))", Ok(json!(false))),
        ("cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')", Ok(json!(true))),
        ("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/16')", Ok(json!(false))),
        ("cidr('192.168.0.1/24').ip() == ip('192.168.0.1')", Ok(json!(true))),
        ("cidr('::1/128').ip().family()", Ok(json!(6))),
        ("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')", Ok(json!(true))),
        ("cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()", Ok(json!(false))),
        ("cidr('192.168.0.0/16').prefixLength()", Ok(json!(16))),
        ("cidr('::1/128').prefixLength()", Ok(json!(128))),
        ("string(cidr('10.0.0.0/8'))", Ok(json!("10.0.0.0/8"))),
        (
            "cidr('192.168.0.0/33')",
            Err(
                "network address parse error during conversion from string: network address parse error during conversion from string: netip.ParsePrefix(\"192.168.0.0/33\"): prefix length out of range",
            ),
        ),
    ]);
}

#[test]
fn format_library_should_validate_named_formats() {
    check(&[
        ("format.dns1123Label().validate('my-label-name')", Ok(Value::Null)),
        ("format.dns1123Label().validate('my-label-name').hasValue()", Ok(json!(false))),
        ("format.dns1123Subdomain().validate('apiextensions.k8s.io').hasValue()", Ok(json!(false))),
        (
            "format.qualifiedName().validate('apiextensions.k8s.io/v1beta1').hasValue()",
            Ok(json!(false)),
        ),
        ("format.dns1123LabelPrefix().validate('my-label-prefix-').hasValue()", Ok(json!(false))),
        ("format.dns1035Label().validate('1abc').hasValue()", Ok(json!(true))),
        ("format.uri().validate('http://example.com').hasValue()", Ok(json!(false))),
        (
            "format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()",
            Ok(json!(false)),
        ),
        ("format.uuid().validate('nope').value()", Ok(json!(["does not match the UUID format"]))),
        ("format.byte().validate('aGVsbG8=').hasValue()", Ok(json!(false))),
        ("format.byte().validate('!!').value()", Ok(json!(["invalid base64"]))),
        ("format.date().validate('2021-01-01').hasValue()", Ok(json!(false))),
        ("format.date().validate('2021-02-30').value()", Ok(json!(["invalid date"]))),
        ("format.datetime().validate('2021-01-01T00:00:00Z').hasValue()", Ok(json!(false))),
        ("format.datetime().validate('2021-01-01').value()", Ok(json!(["invalid datetime"]))),
        ("format.labelValue().validate('').hasValue()", Ok(json!(false))),
        ("format.named('uuid').hasValue()", Ok(json!(true))),
        ("format.named('nope').hasValue()", Ok(json!(false))),
        ("format.named('dns1123Label').value().validate('Bad').hasValue()", Ok(json!(true))),
        (
            "format.dns1123Label().validate('Not-Valid').value()",
            Ok(json!([
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ])),
        ),
    ]);
    let long = "a".repeat(64);
    let got = eval_on(
        "format.dns1123Label().validate(object.name).value().size()",
        &json!({"name": long}),
    );
    assert_eq!(got, Ok(json!(1)), "too long, but well-formed");
}

#[test]
fn strings_extension_should_offer_kube_functions() {
    check(&[
        ("'hello'.charAt(1)", Ok(json!("e"))),
        ("'hello mellow'.indexOf('ello')", Ok(json!(1))),
        ("'hello mellow'.lastIndexOf('ello')", Ok(json!(7))),
        ("'TacoCat'.lowerAscii()", Ok(json!("tacocat"))),
        ("'TacoCat'.upperAscii()", Ok(json!("TACOCAT"))),
        ("'hello hello'.replace('he', 'we')", Ok(json!("wello wello"))),
        ("'hello hello'.replace('he', 'we', 1)", Ok(json!("wello hello"))),
        ("'a,b,c'.split(',')", Ok(json!(["a", "b", "c"]))),
        ("'tacocat'.substring(4)", Ok(json!("cat"))),
        ("'tacocat'.substring(0, 4)", Ok(json!("taco"))),
        ("'  \\ttrim\\n    '.trim()", Ok(json!("trim"))),
        ("['hello', 'mellow'].join(' ')", Ok(json!("hello mellow"))),
        (
            "strings.quote('single-quote with \"double quote\"')",
            Ok(json!("\"single-quote with \\\"double quote\\\"\"")),
        ),
        ("'gums'.reverse()", Ok(json!("smug"))),
        ("sets.contains([1, 2, 3], [2, 3])", Ok(json!(true))),
        ("sets.equivalent([1, 2], [2, 1, 1])", Ok(json!(true))),
        ("sets.intersects([1], [2])", Ok(json!(false))),
        ("cel.bind(x, 'a', x + x)", Ok(json!("aa"))),
        ("jsonPatch.escape('a/b~c')", Ok(json!("a~1b~0c"))),
    ]);
    let err = eval("'hello'.charAt(30)").unwrap_err();
    assert_eq!(err, "index out of range: 30");
}

#[test]
fn compile_should_report_undeclared_references_as_kube() {
    let err = compile("foo == 1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "compilation failed: ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')\n | foo == 1\n | ^"
    );
    let err = compile_with("params.x", &Declarations::of(&["object"])).unwrap_err();
    assert!(err.to_string().contains("undeclared reference to 'params'"), "{err}");
    let err = compile_with("variables.b", &Declarations::of(&["variables"]).with_variables(["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("undefined field 'b'"), "{err}");
    assert!(compile("object.spec.containers.all(c, c.image != '')").is_ok());
    assert!(
        compile("optional.of(1).hasValue() && authorizer.requestResource.check('get').allowed()")
            .is_ok()
    );
    assert!(compile("nosuchfn(1)").is_err());
    assert!(matches!(compile("1 +"), Err(CompileError::Syntax(_))));
}

#[test]
fn runtime_errors_should_use_cel_go_wording() {
    assert_eq!(
        eval_on("object.spec.replicas", &json!({"spec": {}})),
        Err("no such key: replicas".into())
    );
    assert_eq!(eval("1 / 0"), Err("division by zero".into()));
    assert_eq!(eval("1 % 0"), Err("modulus by zero".into()));
    assert_eq!(eval("9223372036854775807 + 1"), Err("integer overflow".into()));
    assert_eq!(eval_on("object.?spec.?replicas.orValue(1)", &json!({})), Ok(json!(1)));
    assert_eq!(eval_on("has(object.spec) ? 1 : 2", &json!({})), Ok(json!(2)));
    assert_eq!(eval("timestamp('2020-01-01T00:00:00Z')"), Ok(json!("2020-01-01T00:00:00Z")));
    assert_eq!(eval("duration('90s')"), Ok(json!("1m30s")));
    assert_eq!(eval("1 < 1.5 && 1 == 1.0"), Ok(json!(true)));
}

#[test]
fn cost_limit_should_stop_an_expensive_expression_quickly() {
    let big = json!({"items": (0..1000).collect::<Vec<_>>()});
    // A billion steps each, were they not stopped.
    for expr in [
        "object.items.map(x, object.items.map(y, object.items.map(z, x + y + z))).size()",
        "object.items.all(x, object.items.all(y, object.items.all(z, x + y + z >= 0)))",
        "object.items.exists(x, object.items.exists(y, object.items.exists(z, x + y + z < 0)))",
        "object.items.filter(x, object.items.filter(y, object.items.exists_one(z, z == x + y)).size() > 0)",
        "cel.bind(l, object.items, l.all(x, l.all(y, l.all(z, [x, y, z].sum() >= 0))))",
    ] {
        let started = Instant::now();
        let got = eval_on(expr, &big);
        assert_eq!(got, Err("operation cancelled: actual cost limit exceeded".into()), "{expr}");
        assert!(started.elapsed() < Duration::from_secs(1), "{expr} took {:?}", started.elapsed());
    }
}

#[test]
fn cost_limit_should_stop_growing_strings() {
    let started = Instant::now();
    let s = "x".repeat(100_000);
    let got = eval_on(
        "[1,2,3,4,5,6,7,8,9,10].map(i, [1,2,3,4,5,6,7,8,9,10].map(j, object.s + object.s + object.s)).size()",
        &json!({"s": s}),
    );
    assert_eq!(got, Err("operation cancelled: actual cost limit exceeded".into()));
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[test]
fn cost_should_allow_ordinary_expressions_and_spend_the_budget() {
    let request = json!({});
    let object = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
    let mut activation = Activation::new(&request);
    activation.object = Some(&object);
    let program =
        compile("object.spec.containers.all(c, c.image.startsWith('a') || c.image == 'b')")
            .unwrap();
    let mut budget = Budget::per_binding();
    assert_eq!(program.eval(&activation, &mut budget), Ok(json!(true)));
    let spent = RUNTIME_COST_BUDGET - budget.remaining();
    assert!(spent > 0 && spent < 100, "spent {spent}");

    let mut small = Budget::new(3);
    assert_eq!(program.eval(&activation, &mut small), Err(EvalError::BudgetExhausted));
    assert_eq!(
        EvalError::BudgetExhausted.to_string(),
        "validation failed due to running out of cost budget, no further validation rules will be run"
    );
}

#[test]
fn variables_should_be_evaluated_lazily_and_once() {
    let checks = CountingAuthorizer::allowing(&[]);
    let mut vars = Variables::new();
    vars.push(
        "decision",
        compile("authorizer.group('apps').resource('deployments').check('create').allowed()"),
    );
    vars.push("replicas", compile("object.spec.replicas"));
    vars.push("broken", compile("object.nope"));
    let request = json!({});
    let object = json!({"spec": {"replicas": 3}});
    let activation = Activation {
        object: Some(&object),
        variables: Some(&vars),
        authorizer: Some(&checks),
        ..Activation::new(&request)
    };
    let session = Session::new(activation);
    let mut budget = Budget::per_binding();
    assert_eq!(
        session.eval(&compile("variables.replicas > 2").unwrap(), &mut budget),
        Ok(json!(true))
    );
    assert_eq!(checks.calls.load(Ordering::SeqCst), 0, "not used yet");
    let twice = compile("variables.decision || variables.decision").unwrap();
    assert_eq!(session.eval(&twice, &mut budget), Ok(json!(false)));
    assert_eq!(session.eval(&twice, &mut budget), Ok(json!(false)));
    assert_eq!(checks.calls.load(Ordering::SeqCst), 1, "evaluated once");
    assert_eq!(
        session.eval(&compile("variables.broken").unwrap(), &mut budget),
        Err(EvalError::Runtime(
            "composited variable \"broken\" fails to evaluate: no such key: nope".into()
        ))
    );
}

struct CountingAuthorizer {
    allow: Vec<String>,
    calls: AtomicUsize,
    seen: Mutex<Vec<AuthzCheck>>,
}

impl CountingAuthorizer {
    fn allowing(verbs: &[&str]) -> Self {
        CountingAuthorizer {
            allow: verbs.iter().map(|s| s.to_string()).collect(),
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }
}

impl Authorizer for CountingAuthorizer {
    fn allowed(&self, check: &AuthzCheck) -> (bool, String) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(check.clone());
        let ok = self.allow.contains(&check.verb);
        (ok, if ok { "allowed by test".into() } else { "no rule".into() })
    }
}

#[test]
fn authorizer_should_check_resources_paths_and_service_accounts() {
    let authz = CountingAuthorizer::allowing(&["create", "get"]);
    let request = json!({"resource": {"group": "apps", "resource": "deployments"}, "namespace": "ns1", "name": "web", "subResource": ""});
    let activation = Activation { authorizer: Some(&authz), ..Activation::new(&request) };
    let run = |e: &str| {
        compile(e).map_err(|e| e.to_string()).and_then(|p| {
            p.eval(&activation, &mut Budget::per_binding()).map_err(|e| e.to_string())
        })
    };
    assert_eq!(
        run(
            "authorizer.group('apps').resource('deployments').subresource('scale').namespace('ns').name('web').check('create').allowed()"
        ),
        Ok(json!(true))
    );
    assert_eq!(run("authorizer.path('/healthz').check('post').reason()"), Ok(json!("no rule")));
    assert_eq!(run("authorizer.path('/healthz').check('get').errored()"), Ok(json!(false)));
    assert_eq!(run("authorizer.path('/healthz').check('get').error()"), Ok(json!("")));
    assert_eq!(run("authorizer.requestResource.check('get').allowed()"), Ok(json!(true)));
    assert_eq!(
        run(
            "authorizer.serviceAccount('default', 'builder').group('').resource('pods').check('list').allowed()"
        ),
        Ok(json!(false))
    );
    assert_eq!(run("authorizer.path('  ')"), Err("path must not be empty".into()));
    assert_eq!(
        run("authorizer.group('apps').resource('')"),
        Err("resource must not be empty".into())
    );
    assert_eq!(
        run("authorizer.serviceAccount('not@valid', 'x')"),
        Err("Invalid service account namespace".into())
    );
    assert_eq!(
        run("authorizer.serviceAccount('ns', 'invalid@*name')"),
        Err("Invalid service account name".into())
    );
    let seen = authz.seen.lock().unwrap();
    assert_eq!(
        seen[0],
        AuthzCheck {
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            namespace: "ns".into(),
            name: "web".into(),
            verb: "create".into(),
            ..AuthzCheck::default()
        }
    );
    assert_eq!(seen[1].path.as_deref(), Some("/healthz"));
    assert_eq!((seen[4].namespace.as_str(), seen[4].name.as_str()), ("ns1", "web"));
    assert_eq!(seen[5].user.as_deref(), Some("system:serviceaccount:default:builder"));
}

#[test]
fn fuzz_eval_should_never_panic() {
    let exprs = [
        "object.a.b.c",
        "[1,2,3].map(x, [1,2,3].map(y, x * y))",
        "quantity(object.q).asInteger()",
        "ip(object.s).family()",
        "url(object.s).getQuery()",
        "object.s.matches(object.s)",
        "variables.x",
        "cel.bind(x, object, x.a)",
        "'\u{1F600}'.substring(-1)",
        "dyn(1) + 'a'",
        "1 +",
        "",
        "{'a': 1, 'a': 2}",
        "object.list.sum()",
        "[[]].min()",
    ];
    let objects: [&[u8]; 4] =
        [b"{}", br#"{"a":{"b":1},"q":"1Ei","s":"[::1","list":["a",1]}"#, b"not json", b"[1,2"];
    for e in exprs {
        for o in objects {
            fuzz_eval(e, o);
        }
    }
}
