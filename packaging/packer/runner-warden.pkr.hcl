# An EC2 AMI for single-use GitHub Actions runner hosts: the actions runner, its unprivileged
# user, Docker (optional), Node.js (newest LTS) and runner-warden, with the config validated, the runner
# user's home recorded as the cleanup baseline and the unit enabled (it starts at first boot,
# never during the build: a bake must not register a runner).
#
# From the repository root (the tarball's default path is relative to where packer runs):
#   git archive --format=tar.gz -o runner-warden.tar.gz HEAD
#   packer init packaging/packer
#   packer build -var runner_sha256=<from the runner release notes> \
#                -var github_org=my-org packaging/packer
#
# Launch settings the AMI cannot carry (put them in the launch template; packaging/README.md):
# - Every host: IMDSv2 only with a hop limit of 1 (metadata_options below shows the values), so
#   a job's containers cannot reach the instance role; the image also blocks IMDS for the runner
#   user (runner-warden-imds-guard.service).
# - recycle_provider = "shutdown": InstanceInitiatedShutdownBehavior = terminate ("Shutdown
#   behavior: Terminate"), otherwise `systemctl poweroff` only stops the instance and an Auto
#   Scaling group (or nobody) replaces it only once a health check fails.
# - recycle_provider = "aws-asg": an instance profile allowing
#   autoscaling:TerminateInstanceInAutoScalingGroup, autoscaling:SetInstanceHealth,
#   autoscaling:DescribeAutoScalingInstances and autoscaling:CompleteLifecycleAction on the
#   group, and a lifecycle hook on autoscaling:EC2_INSTANCE_TERMINATING (its name in
#   lifecycle_hook_name) with a heartbeat timeout of 1200 s and default result CONTINUE: the agent
#   notices the hook through IMDS (interruptions.imds), drains (a busy job gets up to 5 min, then
#   40 s to stop), cleans, deregisters and completes the lifecycle action, so the group terminates
#   the instance at once; the heartbeat is only the bound. Keep shutdown-behaviour terminate too:
#   the chain falls back to poweroff.
# - Deliver the credentials at boot, never in the image: /etc/runner-warden/token (chmod 600)
#   or a GitHub App key, written by user data from a secrets manager.

packer {
  # required_plugins, can(regex()) and imds_support need Packer 1.10 or later; Debian 12's
  # packer is 1.6.6, which stops here with this constraint named (test/e2e/release/packer.test.ts).
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "instance_type" {
  type        = string
  default     = "t3.large"
  description = "Build instance; the runner's dependencies and npm ci want 2 vCPUs and 8 GiB."
}

variable "source_ami_name" {
  type        = string
  default     = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
  description = "Name filter of the base image (Ubuntu 24.04 or Debian 12; amd64 or arm64)."
}

variable "source_ami_owner" {
  type        = string
  default     = "099720109477"
  description = "Canonical; Debian's images are owned by 136693071363."
}

variable "ssh_username" {
  type    = string
  default = "ubuntu"
}

variable "runner_version" {
  type        = string
  default     = "2.336.0"
  description = "actions/runner release; pin the current one (runners older than about 30 days are refused by GitHub)."
}

variable "runner_sha256" {
  type        = string
  description = "SHA-256 of actions-runner-linux-<arch>-<version>.tar.gz, from the release notes. Required."
}

variable "node_version" {
  type        = string
  default     = "26"
  description = "Node.js release line or exact version (26 or 26.12.1): the newest LTS by default; runner-warden needs >= 20.19."
}

variable "runner_warden_tarball" {
  type        = string
  default     = "runner-warden.tar.gz"
  description = "Source tarball of runner-warden (git archive), relative to where packer runs."
}

variable "github_url" {
  type    = string
  default = "https://github.com"
}

variable "github_org" {
  type        = string
  description = "Organisation the runners register in."
}

variable "runner_labels" {
  type    = string
  default = "self-hosted,linux"
}

variable "team" {
  type        = string
  default     = "default"
  description = "Team policy (/etc/runner-warden/policies/<team>.yaml) the hosts follow."
}

variable "recycle_provider" {
  type    = string
  default = "shutdown"
  validation {
    condition     = contains(["shutdown", "aws-asg"], var.recycle_provider)
    error_message = "The recycle_provider must be shutdown or aws-asg."
  }
}

variable "lifecycle_hook_name" {
  type        = string
  default     = ""
  description = "With recycle_provider = aws-asg: the group's EC2_INSTANCE_TERMINATING hook, completed once the host is drained (empty: wait for the heartbeat timeout)."
  validation {
    condition     = can(regex("^[A-Za-z0-9_/-]{0,255}$", var.lifecycle_hook_name))
    error_message = "The lifecycle_hook_name must be 1-255 of A-Z a-z 0-9 _ / - (or empty)."
  }
}

variable "install_docker" {
  type        = bool
  default     = true
  description = "Install Docker and put the runner user in the docker group (root-equivalent: only the throwaway VM contains a job then)."
}

variable "runner_sudo" {
  type        = bool
  default     = false
  description = "Passwordless sudo for the runner user, as on GitHub-hosted runners (same caveat as docker)."
}

locals {
  stamp = formatdate("YYYYMMDD-hhmmss", timestamp())
}

source "amazon-ebs" "runner" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "runner-warden-${local.stamp}"
  # Instances launched from this AMI default to IMDSv2 only.
  imds_support = "v2.0"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  # The build instance itself: IMDSv2 only, hop limit 1 (what the launch template should set).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 40
    volume_type           = "gp3"
    delete_on_termination = true
  }

  tags = {
    Name          = "runner-warden"
    RunnerVersion = var.runner_version
  }
}

build {
  sources = ["source.amazon-ebs.runner"]

  provisioner "file" {
    source      = var.runner_warden_tarball
    destination = "/tmp/runner-warden.tar.gz"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "RUNNER_VERSION=${var.runner_version}",
      "RUNNER_SHA256=${var.runner_sha256}",
      "NODE_VERSION=${var.node_version}",
      "RUNNER_WARDEN_TARBALL=/tmp/runner-warden.tar.gz",
      "GITHUB_URL=${var.github_url}",
      "GITHUB_ORG=${var.github_org}",
      "RUNNER_LABELS=${var.runner_labels}",
      "TEAM=${var.team}",
      "RECYCLE_PROVIDER=${var.recycle_provider}",
      "LIFECYCLE_HOOK_NAME=${var.lifecycle_hook_name}",
      "INSTALL_DOCKER=${var.install_docker}",
      "RUNNER_SUDO=${var.runner_sudo}",
    ]
  }
}
