//! The test context: one moto server per test binary on a free loopback port, a scratch folder
//! and a unique environment name per test, and the real `infra` binary run against them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2::types::Filter;

pub const REGION: &str = "us-east-1";

struct Moto {
    port: u16,
    // Held open: the server exits when this process (and so this pipe) goes away.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("INFRA_TEST_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "the AWS emulator is not installed: run `scripts/dev test` (it creates .venv with the pinned moto)"
    );
    p
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto_server.py");
        let mut child = Command::new(python())
            .arg(script)
            // ACM issues a DNS-validated certificate this long after it was requested.
            .env("MOTO_ACM_VALIDATION_WAIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let stdout = child.stdout.take().expect("moto stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading moto's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto printed {line:?}"));
        Moto {
            port,
            _stdin: Mutex::new(child.stdin.take().expect("moto stdin")),
            _child: Mutex::new(child),
        }
    })
}

pub fn endpoint() -> String {
    format!("http://127.0.0.1:{}", moto().port)
}

/// What one run of `infra` gave back.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub struct Ctx {
    pub env: String,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub aws: infra::aws::Aws,
}

impl Ctx {
    /// A fresh context; `prefix` (a few letters) makes failures easy to place.
    pub fn new(prefix: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let env = format!("{prefix}{n}p{}", std::process::id() % 100_000);
        let bucket = format!("infra-test-{env}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let aws = rt.block_on(infra::aws::connect_emulator(REGION, &env, &endpoint()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("environments")).unwrap();
        Ctx {
            env,
            bucket,
            dir,
            rt,
            ec2: aws.ec2.clone(),
            s3: aws.s3.clone(),
            aws,
        }
    }

    pub fn ecr(&self) -> &aws_sdk_ecr::Client {
        &self.aws.ecr
    }

    pub fn ecs(&self) -> &aws_sdk_ecs::Client {
        &self.aws.ecs
    }

    pub fn logs(&self) -> &aws_sdk_cloudwatchlogs::Client {
        &self.aws.logs
    }

    /// Writes the environment file; `{env}` and `{bucket}` are filled in.
    pub fn write_env(&self, yaml: &str) -> &Self {
        let text = yaml
            .replace("{env}", &self.env)
            .replace("{bucket}", &self.bucket);
        std::fs::write(self.path(&format!("environments/{}.yaml", self.env)), text).unwrap();
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_infra"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `infra ARGS` with `{env}` in the arguments replaced by this test's environment.
    pub fn infra(&self, args: &[&str]) -> Run {
        let args: Vec<String> = args.iter().map(|a| a.replace("{env}", &self.env)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.command(&args).output().expect("running infra");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "infra panicked:\n{}",
            run.stderr
        );
        run
    }

    /// Runs `infra ARGS` (`{env}` filled in) with extra environment variables: its exit code
    /// (-1 when killed) and stdout followed by stderr.
    pub fn infra_with(&self, vars: &[(&str, &str)], args: &[&str]) -> (i32, String) {
        let args: Vec<String> = args.iter().map(|a| a.replace("{env}", &self.env)).collect();
        let mut cmd = self.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running infra");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `apply --auto-approve --no-wait`: the emulator starts ECS deployments but never finishes
    /// one, so following rollouts is tested with canned responses (`aws::rollout`) instead.
    pub fn apply(&self) -> Run {
        let run = self.infra(&["apply", "{env}", "--auto-approve", "--no-wait"]);
        run.success();
        run
    }

    /// The ACTIVE task definition revisions of this environment's service `service`, oldest first.
    pub fn active_revisions(&self, service: &str) -> Vec<String> {
        self.rt.block_on(async {
            self.ecs()
                .list_task_definitions()
                .family_prefix(format!("{}-{service}", self.env))
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .send()
                .await
                .unwrap()
                .task_definition_arns()
                .to_vec()
        })
    }

    /// A public hosted zone `<env>.example.com` for this test: its id and name.
    pub fn hosted_zone(&self) -> (String, String) {
        let name = format!("{}.example.com", self.env);
        let id = self.rt.block_on(async {
            self.aws
                .route53()
                .create_hosted_zone()
                .name(&name)
                .caller_reference(&self.env)
                .send()
                .await
                .unwrap()
                .hosted_zone
                .unwrap()
                .id
                .trim_start_matches("/hostedzone/")
                .to_string()
        });
        (id, name)
    }

    /// The convergence check every feature test ends with.
    #[track_caller]
    pub fn assert_converged(&self) {
        let run = self.infra(&["plan", "{env}", "--detailed-exitcode"]);
        assert_eq!(
            run.code, 0,
            "not converged: plan still has changes\n{}\n{}",
            run.stdout, run.stderr
        );
        assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    }

    /// The state object as stored in S3.
    pub fn state_bytes(&self) -> Vec<u8> {
        self.rt.block_on(async {
            let out = self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(format!("{}.json", self.env))
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }

    pub fn env_filter(&self) -> Filter {
        Filter::builder()
            .name("tag:infra:environment")
            .values(&self.env)
            .build()
    }

    /// Replaces AWS ids, the environment name and timings by placeholders for snapshots.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.env, "[env]");
        for (re, with) in redactions() {
            out = re.replace_all(&out, *with).into_owned();
        }
        out
    }
}

fn redactions() -> &'static [(regex::Regex, &'static str)] {
    static R: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        [
            (
                r"\b(vpc|subnet|igw|nat|rtb|eipalloc|rtbassoc)-[0-9a-f]{8,17}\b",
                "$1-[id]",
            ),
            (r"\[\d+\.\d+s\]", "[time]"),
        ]
        .into_iter()
        .map(|(p, w)| (regex::Regex::new(p).unwrap(), w))
        .collect()
    })
}

/// A two-zone environment with a single NAT gateway: `{env}`/`{bucket}` are filled in.
pub const TWO_ZONES: &str = "environment: {env}
region: us-east-1
tags: {team: platform}
state:
  s3: {bucket: {bucket}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
  nat: single
";
