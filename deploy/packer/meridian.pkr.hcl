# Machine image with the meridian binary, its systemd unit and a default
# config. Build the binary first (cargo build --release -p meridian
# --locked), then for example:
#   packer init deploy/packer
#   packer build -only='qemu.debian' deploy/packer
#   packer build -only='amazon-ebs.debian' -var aws_region=eu-west-1 deploy/packer
# Per-machine settings (region, peers, password, admin token, cluster
# secret) are written at first boot to /etc/meridian/meridian.env, and the
# region's TLS certificate, key and cluster CA to /etc/meridian/tls; the
# image holds no secret.

packer {
  required_version = ">= 1.11.0"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "~> 1.1"
    }
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
  }
}

variable "meridian_binary" {
  type        = string
  description = "Path to the release build of the meridian binary (x86_64, glibc)."
  default     = "target/release/meridian"
}

variable "version" {
  type        = string
  description = "Meridian version, recorded in the image name and tags."
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.]+)?$", var.version))
    error_message = "The version must be a semantic version such as 0.1.0."
  }
}

variable "debian_image_url" {
  type        = string
  description = "Debian 12 generic cloud image (qcow2) that the qemu build starts from."
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "debian_image_checksum" {
  type        = string
  description = "Checksum of debian_image_url, or file:URL of the published SHA512SUMS."
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "ssh_public_key" {
  type        = string
  description = "Public key the qemu build logs in with (given to cloud-init on a seed CD)."
  default     = ""
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private key matching ssh_public_key, for the qemu build only."
  default     = ""
}

variable "aws_region" {
  type        = string
  description = "AWS region the amazon-ebs build runs in and registers the AMI in."
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "The AWS region must look like us-east-1."
  }
}

variable "aws_instance_type" {
  type        = string
  description = "Instance type of the temporary build instance."
  default     = "t3.small"
}

locals {
  image_name = "meridian-${var.version}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
  tags = {
    "app.kubernetes.io/name" = "meridian"
    "meridian-version"       = var.version
    "built-by"               = "packer"
  }
}

source "qemu" "debian" {
  iso_url          = var.debian_image_url
  iso_checksum     = var.debian_image_checksum
  disk_image       = true
  disk_size        = "8G"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  format           = "qcow2"
  accelerator      = "kvm"
  headless         = true
  memory           = 2048
  cpus             = 2
  output_directory = "output/${local.image_name}"
  vm_name          = "${local.image_name}.qcow2"
  cd_label         = "cidata"
  cd_content = {
    "meta-data" = "instance-id: ${local.image_name}\nlocal-hostname: meridian\n"
    "user-data" = <<-EOT
      #cloud-config
      users:
        - name: debian
          sudo: "ALL=(ALL) NOPASSWD:ALL"
          shell: /bin/bash
          ssh_authorized_keys:
            - ${var.ssh_public_key}
    EOT
  }
  communicator         = "ssh"
  ssh_username         = "debian"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "10m"
  shutdown_command     = "sudo shutdown -P now"
}

source "amazon-ebs" "debian" {
  region        = var.aws_region
  instance_type = var.aws_instance_type
  ami_name      = local.image_name
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }
  ssh_username = "admin"
  encrypt_boot = true
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 8
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }
  tags          = local.tags
  run_tags      = local.tags
  snapshot_tags = local.tags
}

build {
  sources = ["source.qemu.debian", "source.amazon-ebs.debian"]

  provisioner "file" {
    source      = var.meridian_binary
    destination = "/tmp/meridian"
  }

  provisioner "file" {
    source      = "${path.root}/meridian.service"
    destination = "/tmp/meridian.service"
  }

  provisioner "file" {
    source      = "${path.root}/meridian.toml"
    destination = "/tmp/meridian.toml"
  }

  provisioner "file" {
    source      = "${path.root}/../../docs/deploy.md"
    destination = "/tmp/deploy.md"
  }

  provisioner "shell" {
    execute_command = "sudo sh -eu '{{ .Path }}'"
    inline = [
      "groupadd --system --gid 10001 meridian",
      "useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/meridian --shell /usr/sbin/nologin meridian",
      "install -m 0755 -o root -g root /tmp/meridian /usr/local/bin/meridian",
      "install -d -m 0755 -o root -g root /etc/meridian",
      "install -m 0644 -o root -g root /tmp/meridian.toml /etc/meridian/meridian.toml",
      "install -m 0644 -o root -g root /tmp/meridian.service /etc/systemd/system/meridian.service",
      "install -D -m 0644 /tmp/deploy.md /usr/share/doc/meridian/deploy.md",
      "install -d -m 0750 -o meridian -g meridian /var/lib/meridian",
      "rm -f /tmp/meridian /tmp/meridian.toml /tmp/meridian.service /tmp/deploy.md",
      "/usr/local/bin/meridian --version",
      "systemd-analyze verify /etc/systemd/system/meridian.service",
      "systemctl daemon-reload",
      "systemctl enable meridian.service",
      "cloud-init clean --logs --machine-id",
    ]
  }

  post-processor "manifest" {
    output     = "output/packer-manifest.json"
    strip_path = true
  }
}
